"""Pod Security Standards checks (baseline and restricted). Filled in by the PSS work."""
