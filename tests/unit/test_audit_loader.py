"""The audit's YAML reader: documents, their numbers and lines, errors that do not stop it."""

from __future__ import annotations

import io
import pathlib
from typing import Any

import pytest

from kube_guardrails.audit import loader


def parsed(text: str) -> list[tuple[Any, ...]]:
    """(index, line, obj) for documents, ("error", index, line, message) for errors."""
    out: list[tuple[Any, ...]] = []
    for item in loader.parse(text, "f.yaml"):
        if isinstance(item, loader.InputError):
            out.append(("error", item.index, item.line, item.message))
        else:
            out.append((item.index, item.line, item.obj))
    return out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("kind: Pod\n", [(1, 1, {"kind": "Pod"})], id="single-document"),
        pytest.param("", [], id="empty-file"),
        pytest.param("# only a comment\n\n", [], id="comments-only"),
        pytest.param(
            "---\nkind: Pod\n", [(1, 2, {"kind": "Pod"})], id="leading-marker-is-not-a-document"
        ),
        pytest.param(
            "kind: A\n---\nkind: B\n---\n\n# c\nkind: C\n",
            [(1, 1, {"kind": "A"}), (2, 3, {"kind": "B"}), (3, 7, {"kind": "C"})],
            id="three-documents-with-lines",
        ),
        pytest.param(
            "kind: A\n---\n---\nkind: B\n",
            [(1, 1, {"kind": "A"}), (2, 4, {"kind": "B"})],
            id="empty-document-between-markers-gets-no-number",
        ),
        pytest.param(
            "--- {kind: A}\n--- {kind: B}\n",
            [(1, 1, {"kind": "A"}), (2, 2, {"kind": "B"})],
            id="content-on-the-marker-line",
        ),
        pytest.param(
            "kind: A\n...\n---\nkind: B\n",
            [(1, 1, {"kind": "A"}), (2, 4, {"kind": "B"})],
            id="document-end-marker",
        ),
        pytest.param(
            "%YAML 1.1\n---\nkind: A\n",
            [(1, 1, {"kind": "A"})],
            id="directive-stays-with-its-document",
        ),
        pytest.param(
            "kind: A\r\n---\r\nkind: B\r\n",
            [(1, 1, {"kind": "A"}), (2, 3, {"kind": "B"})],
            id="crlf-line-endings",
        ),
        pytest.param(
            "data: |\n  ---\n  not a marker\n",
            [(1, 1, {"data": "---\nnot a marker\n"})],
            id="indented-dashes-in-a-block-scalar",
        ),
        pytest.param("~\n---\nkind: A\n", [(1, 3, {"kind": "A"})], id="null-document-skipped"),
        # Every YAML line break starts a line (libyaml, go-yaml and so kustomize agree):
        # split at LF only, the second document would be left unread in the first chunk.
        pytest.param(
            "kind: A\r---\r\rkind: B\r",
            [(1, 1, {"kind": "A"}), (2, 4, {"kind": "B"})],
            id="cr-line-endings",
        ),
        pytest.param(
            "# comment\rkind: A\r",
            [(1, 2, {"kind": "A"})],
            id="cr-comment-then-content-is-a-document",
        ),
        pytest.param(
            "kind: A\u2028---\u2028kind: B\x85---\x85kind: C\u2029",
            [(1, 1, {"kind": "A"}), (2, 3, {"kind": "B"}), (3, 5, {"kind": "C"})],
            id="unicode-line-breaks",
        ),
    ],
)
def test_documents_are_numbered_from_one_with_their_first_content_line(
    text: str, expected: list[tuple[Any, ...]]
) -> None:
    assert parsed(text) == expected


@pytest.mark.parametrize(
    ("text", "index", "line", "fragment"),
    [
        pytest.param(
            "kind: A\n---\nkind: [B\n---\nkind: C\n",
            2,
            4,
            "did not find expected",
            id="unclosed-flow-sequence",
        ),
        pytest.param(
            "kind: A\n---\nkind: B\n  bad: indent\n---\nkind: C\n",
            2,
            4,
            "mapping values are not allowed",
            id="bad-indentation",
        ),
        pytest.param("a: b: c\n", 1, 1, "mapping values are not allowed", id="first-document"),
    ],
)
def test_a_malformed_document_is_reported_and_the_others_are_still_read(
    text: str, index: int, line: int, fragment: str
) -> None:
    items = parsed(text)
    errors = [i for i in items if i[0] == "error"]
    assert len(errors) == 1
    _, err_index, err_line, message = errors[0]
    assert (err_index, err_line) == (index, line)
    assert fragment in message
    good = [i for i in items if i[0] != "error"]
    assert len(good) == len(items) - 1
    # Documents after the bad one keep their own numbers.
    assert [g[0] for g in good] == [i for i in range(1, len(items) + 1) if i != index]


def test_the_c_loader_is_used_when_pyyaml_has_it() -> None:
    import yaml

    if getattr(yaml, "__with_libyaml__", False):
        assert loader.Loader is yaml.CSafeLoader
    else:
        assert loader.Loader is yaml.SafeLoader


def test_unsafe_tags_are_refused() -> None:
    items = parsed("!!python/object/apply:os.system ['true']\n")
    assert items[0][0] == "error"


def make_tree(root: pathlib.Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.mark.parametrize(
    ("files", "args", "expected", "missing"),
    [
        pytest.param(
            {
                "b.yaml": "",
                "a.yml": "",
                "sub/c.yaml": "",
                "notes.txt": "",
                "x.json": "",
                "Y.YAML": "",
            },
            ["."],
            ["a.yml", "b.yaml", "x.json", "sub/c.yaml"],
            [],
            # kubectl apply -f DIR reads .json too (case-sensitive suffixes, as kubectl).
            id="directory-recursive-sorted-yaml-and-json",
        ),
        pytest.param(
            {"a.yaml": "", ".git/x.yaml": "", ".hidden/y.yaml": "", "d/.cache/z.yaml": ""},
            ["."],
            ["a.yaml"],
            [],
            id="hidden-directories-skipped",
        ),
        pytest.param(
            {"manifest.txt": "kind: Pod\n"},
            ["manifest.txt"],
            ["manifest.txt"],
            [],
            id="explicit-file-any-suffix",
        ),
        pytest.param(
            {"a.yaml": ""}, ["a.yaml", ".", "a.yaml"], ["a.yaml"], [], id="each-file-read-once"
        ),
        pytest.param({}, ["nope.yaml"], [], ["nope.yaml"], id="missing-path-is-an-error"),
    ],
)
def test_expand(
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    files: dict[str, str],
    args: list[str],
    expected: list[str],
    missing: list[str],
) -> None:
    make_tree(tmp_path, files)
    monkeypatch.chdir(tmp_path)
    found, errors = loader.expand(args)
    assert [pathlib.Path(f).as_posix().removeprefix("./") for f in found] == expected
    assert [e.source for e in errors] == missing


def test_stdin_is_read_with_its_own_name() -> None:
    items = list(loader.load("-", stdin=io.BytesIO(b"kind: A\n---\nkind: B\n")))
    assert [(d.source, d.index) for d in items if isinstance(d, loader.Document)] == [
        ("<stdin>", 1),
        ("<stdin>", 2),
    ]


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        pytest.param(b"kind: \xff\xfe\n", "not UTF-8", id="not-utf8"),
    ],
)
def test_unreadable_file_is_one_error_for_the_file(
    tmp_path: pathlib.Path, data: bytes, fragment: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(data)
    items = list(loader.load(str(path)))
    assert len(items) == 1
    assert isinstance(items[0], loader.InputError)
    assert items[0].index is None
    assert fragment in items[0].message


def test_utf8_bom_is_accepted(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbfkind: Pod\n")
    items = list(loader.load(str(path)))
    assert isinstance(items[0], loader.Document)
    assert items[0].obj == {"kind": "Pod"}
