"""Offline audit: the check engine over YAML manifests, for CI and GitOps (no cluster)."""
