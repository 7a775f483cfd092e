"""Best-practice checks. Filled in by the best-practice work."""
