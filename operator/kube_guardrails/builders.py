"""Desired manifests of the managed objects (NetworkPolicy, LimitRange, ResourceQuota).

Pure functions of (namespace, policy); filled in by the hardening work.
"""
