"""The check engine: registry, Pod Security Standards and best-practice checks.

Pure code: imports neither kopf nor kubernetes, so every check is table-testable and
the offline audit and the operator share exactly the same verdicts.
"""
