"""Image reference parsing and allow-list matching behind imageTag and imageRegistry.

The fixtures in ``tests/checks/cases`` test the checks end to end; this table pins the
reference grammar itself, where a wrong split (a port read as a tag) changes verdicts.
"""

from __future__ import annotations

import pytest

from kube_guardrails.checks import engine, practices, registry

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("image", "domain", "path", "tag", "digest"),
    [
        ("nginx", "docker.io", "library/nginx", None, None),
        ("nginx:1.25", "docker.io", "library/nginx", "1.25", None),
        ("bitnami/redis:7", "docker.io", "bitnami/redis", "7", None),
        ("docker.io/nginx", "docker.io", "library/nginx", None, None),
        ("index.docker.io/library/nginx:1", "docker.io", "library/nginx", "1", None),
        ("localhost/app", "localhost", "app", None, None),
        ("localhost:5000/app", "localhost:5000", "app", None, None),
        ("registry:5000/app:1.2", "registry:5000", "app", "1.2", None),
        ("registry.example.com/a/b/c:v2", "registry.example.com", "a/b/c", "v2", None),
        (f"ghcr.io/org/app@{DIGEST}", "ghcr.io", "org/app", None, DIGEST),
        (f"ghcr.io/org/app:1.0@{DIGEST}", "ghcr.io", "org/app", "1.0", DIGEST),
        (f"registry:5000/app@{DIGEST}", "registry:5000", "app", None, DIGEST),
        ("Registry/app", "Registry", "app", None, None),
    ],
)
def test_parse_image(
    image: str, domain: str, path: str, tag: str | None, digest: str | None
) -> None:
    assert practices.parse_image(image) == practices.ImageRef(
        domain=domain, path=path, tag=tag, digest=digest
    )


@pytest.mark.parametrize(
    ("image", "normalized"),
    [
        ("nginx:1.25", "docker.io/library/nginx:1.25"),
        ("bitnami/redis", "docker.io/bitnami/redis"),
        (f"quay.io/x/y:1@{DIGEST}", f"quay.io/x/y:1@{DIGEST}"),
    ],
)
def test_normalized(image: str, normalized: str) -> None:
    assert practices.parse_image(image).normalized == normalized


@pytest.mark.parametrize(
    ("image", "prefix", "allowed"),
    [
        ("registry.example.com/app:1", "registry.example.com/", True),
        ("registry.example.com/app:1", "registry.example.com", True),
        ("registry.example.com:5000/app:1", "registry.example.com", True),
        ("registry.example.com.evil.io/app:1", "registry.example.com", False),
        ("registry.example.com.evil.io/app:1", "registry.example.com/", False),
        ("nginx:1.25", "docker.io/library/", True),
        ("nginx:1.25", "docker.io/library/nginx", True),
        (f"nginx@{DIGEST}", "docker.io/library/nginx", True),
        ("nginx-unofficial:1", "docker.io/library/nginx", False),
        ("bitnami/redis:7", "docker.io/library/", False),
        ("bitnami/redis:7", "docker.io/bitnami/", True),
        ("nginx:1.25", "nginx", False),  # prefixes compare with the normalised reference
        ("registry.example.com/team-a/app:1", "registry.example.com/team-a/", True),
        ("registry.example.com/team-ab/app:1", "registry.example.com/team-a", False),
    ],
)
def test_prefix_matches(image: str, prefix: str, allowed: bool) -> None:
    normalized = practices.parse_image(image).normalized
    assert practices.prefix_matches(normalized, prefix) is allowed


@pytest.mark.parametrize(
    "allowed",
    [
        pytest.param("registry.example.com/", id="string-not-list"),
        pytest.param(["registry.example.com/", 3], id="non-string-entry"),
        pytest.param([""], id="empty-entry"),
    ],
)
def test_malformed_allow_list_is_an_error_not_a_pass(allowed: object) -> None:
    pod = engine.pod_input(
        {"kind": "Pod", "spec": {"containers": [{"name": "a", "image": "quay.io/x/y:1"}]}}
    )
    assert pod is not None
    [result] = engine.run(
        pod,
        [engine.Selected(check=registry.get("imageRegistry"), params={"allowed": allowed})],
        level=registry.Level.BASELINE,
    )
    assert result.outcome is engine.Outcome.ERROR
    assert "imageRegistry.allowed" in result.findings[0].message
