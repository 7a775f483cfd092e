"""The bounded YAML builder: same objects as ``yaml.safe_load``, refusals where it is unsafe."""

from __future__ import annotations

import math
import pathlib
from typing import Any

import pytest
import yaml

from kube_guardrails.audit import safeyaml

ROOT = pathlib.Path(__file__).resolve().parents[2]


def laughs(levels: int, width: int = 9) -> str:
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("a: 1\nb: [x, {c: d}]\n", {"a": 1, "b": ["x", {"c": "d"}]}, id="nested"),
        pytest.param("'': x\n", {"": "x"}, id="empty-key"),
        pytest.param(
            "a: yes\nb: 0x10\nc: ~\nd: '1'\n",
            {"a": True, "b": 16, "c": None, "d": "1"},
            id="yaml-1.1-scalars",
        ),
        # go-yaml v2 (kubectl) keeps timestamps as the strings they are written as.
        pytest.param("t: 2020-01-02\n", {"t": "2020-01-02"}, id="timestamp-stays-a-string"),
        # !!binary is the text it encodes, as kubectl sees it: keys and kinds included.
        pytest.param("!!binary UG9k : !!binary UG9k\n", {"Pod": "Pod"}, id="binary-is-text"),
        pytest.param("b: !!binary /w==\n", {"b": "\ufffd"}, id="binary-not-utf8"),
        pytest.param("x: &a {p: 1}\ny: *a\n", {"x": {"p": 1}, "y": {"p": 1}}, id="alias"),
        pytest.param(
            "b: &b {p: 1, q: 1}\nm:\n  <<: *b\n  q: 2\n",
            {"b": {"p": 1, "q": 1}, "m": {"q": 2, "p": 1}},
            id="merge-explicit-wins",
        ),
        pytest.param(
            "a: &a {p: 1}\nb: &b {p: 2, r: 3}\nm: {<<: [*a, *b]}\n",
            {"a": {"p": 1}, "b": {"p": 2, "r": 3}, "m": {"p": 1, "r": 3}},
            id="merge-earlier-wins",
        ),
        pytest.param(
            "b: &b {p: true, q: 1}\nm:\n  p: true\n  <<: *b\n",
            {"b": {"p": True, "q": 1}, "m": {"p": True, "q": 1}},
            id="merge-after-explicit-key-with-the-same-value",
        ),
        pytest.param("s: !!str 12\n", {"s": "12"}, id="explicit-tag"),
        pytest.param("", None, id="empty"),
        pytest.param(laughs(3), yaml.safe_load(laughs(3)), id="small-aliasing-allowed"),
        pytest.param(
            "a: " + "[" * 150 + "]" * 150 + "\n",
            yaml.safe_load("a: " + "[" * 150 + "]" * 150),
            id="nested-150",
        ),
    ],
)
def test_same_objects_as_safe_load(text: str, expected: Any) -> None:
    assert safeyaml.load(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        pytest.param(laughs(9), "excessive aliasing", id="billion-laughs"),
        pytest.param(
            "c: &c {a: 1}\nl: [" + ", ".join(["*c"] * 5000) + "]\n",
            "excessive aliasing",
            id="fan-out",
        ),
        pytest.param("a: &x [1, *x]\n", "recursive alias", id="recursive"),
        pytest.param("a: *nope\n", "unknown alias *nope", id="unknown-alias"),
        pytest.param(
            "a: " + "[" * 300 + "]" * 300 + "\n", "nesting deeper than 200", id="deep-flow"
        ),
        pytest.param(
            "".join(" " * i + f"k{i}:\n" for i in range(300)) + " " * 300 + "v\n",
            "nesting deeper than 200",
            id="deep-block",
        ),
        pytest.param("a: 1\nb: 2\na: 3\n", "duplicate key 'a'", id="duplicate-key"),
        pytest.param("m: {x: 1, x: 1}\n", "duplicate key 'x'", id="duplicate-same-value"),
        pytest.param("? [a]\n: 1\n", "a mapping key must be a scalar", id="list-key"),
        pytest.param("a: !!set {x}\n", "unsupported tag", id="set-tag"),
        pytest.param("a: !custom x\n", "could not determine a constructor", id="unknown-tag"),
        pytest.param("m: {<<: 1}\n", "merge key", id="merge-of-scalar"),
        pytest.param(
            "? !!binary cHJpdmlsZWdlZA==\n: true\nprivileged: false\n",
            "duplicate key 'privileged'",
            id="binary-key-duplicates-a-text-key",
        ),
        # kubectl (go-yaml v2) lets a later "<<" overwrite an earlier explicit key or
        # merge; kustomize (v3) and the spec keep the explicit one: refused, not guessed.
        pytest.param(
            "b: &b {p: true}\nm:\n  p: false\n  <<: *b\n",
            "YAML readers disagree",
            id="explicit-key-then-conflicting-merge",
        ),
        pytest.param(
            "a: &a {p: 1}\nb: &b {p: 2}\nm:\n  <<: *a\n  <<: *b\n",
            "YAML readers disagree",
            id="two-merge-keys-conflicting",
        ),
        # The loader splits streams; a second document reaching here was not seen there.
        pytest.param("a: 1\n---\nb: 2\n", "a second document", id="second-document"),
    ],
)
def test_refused(text: str, fragment: str) -> None:
    with pytest.raises(yaml.YAMLError) as info:
        safeyaml.load(text)
    assert fragment in str(info.value)


def test_nan_is_a_float() -> None:
    assert math.isnan(safeyaml.load("q: .nan\n")["q"])


@pytest.mark.parametrize(
    ("decoded", "ratio"),
    [(1000, 0.99), (400_000, 0.99), (2_200_000, 0.545), (4_000_000, 0.10), (10**8, 0.10)],
)
def test_alias_ratio_follows_go_yaml(decoded: int, ratio: float) -> None:
    assert safeyaml.allowed_alias_ratio(decoded) == pytest.approx(ratio)


def test_every_example_parses_as_with_safe_load() -> None:
    from kube_guardrails.audit import loader

    files = sorted((ROOT / "examples").rglob("*.yaml"))
    assert files
    for f in files:
        text = f.read_text()
        ours = [d.obj for d in loader.parse(text, str(f)) if isinstance(d, loader.Document)]
        assert ours == [d for d in yaml.safe_load_all(text) if d is not None], f


@pytest.mark.parametrize(
    ("jobs", "chunks", "cpus", "expected"),
    [(100_000, 5, 2, 2), (100_000, 1, 64, 1), (3, 100, 64, 3), (1, 100, 2, 1), (0, 4, 2, 1)],
)
def test_workers_capped_by_cpus_and_work(jobs: int, chunks: int, cpus: int, expected: int) -> None:
    from kube_guardrails.audit import runner

    assert runner.workers(jobs, chunks=chunks, cpus=cpus) == expected
