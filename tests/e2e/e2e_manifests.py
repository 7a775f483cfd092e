"""The install manifests (manifests/) as the objects they render to, for the e2e tests."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
from typing import Any

import yaml

Obj = dict[str, Any]
ROOT = pathlib.Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")


def kubectl() -> str | None:
    return shutil.which("kubectl")


def rendered_manifests(directory: pathlib.Path = MANIFESTS) -> list[Obj]:
    """The install objects: ``kubectl kustomize`` when available, else a plain read.

    The plain read follows ``resources:`` (files and sub-kustomizations) and the
    top-level ``namespace:``; that is all the project's kustomization uses.
    """
    found_kubectl = kubectl()
    if found_kubectl:
        out = subprocess.run(
            [found_kubectl, "kustomize", str(directory)], check=True, capture_output=True, text=True
        ).stdout
        return [d for d in yaml.safe_load_all(out) if d]
    found = [directory / n for n in KUSTOMIZATION_NAMES if (directory / n).is_file()]
    assert found, f"{directory} has no kustomization file"
    kustomization = yaml.safe_load(found[0].read_text()) or {}
    docs: list[Obj] = []
    for entry in kustomization.get("resources") or []:
        path = directory / entry
        if path.is_dir():
            docs.extend(rendered_manifests(path))
        else:
            docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    namespace = kustomization.get("namespace")
    if namespace:
        for doc in docs:
            if doc.get("kind") not in _CLUSTER_KINDS:
                doc.setdefault("metadata", {})["namespace"] = namespace
    return docs


_CLUSTER_KINDS = {
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
}
