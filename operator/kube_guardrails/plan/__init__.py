"""``kube-guardrails plan``: what applying a policy file would do (core and render pure)."""
