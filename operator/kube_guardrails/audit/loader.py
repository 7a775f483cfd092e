"""Read YAML manifests for the offline audit: files, directories and stdin.

Why not ``yaml.safe_load_all`` on the whole file: it stops at the first bad document
and takes every later one with it, and its line numbers would not say which document
was wrong. Instead each stream is split at its document markers (``---`` / ``...`` at
the start of a line, as kubectl's YAML reader does; in YAML a marker at column 0 cannot
be part of a scalar) and each document is parsed on its own, by :mod:`safeyaml` (libyaml's C
parser, with bounds on aliasing, depth and duplicate keys). A malformed
document becomes an :class:`InputError` naming file, document index and line, and the
documents after it are still read.

A line starts after any of YAML's line breaks, as libyaml (and go-yaml, which kustomize,
Argo CD and Flux use) count them: LF, CRLF, a lone CR, NEL (U+0085) and the Unicode
line and paragraph separators (U+2028, U+2029). Splitting at LF only would leave a
second document behind a lone CR or a U+2028 inside the first chunk, where the parser
reads the first document and nothing would ever look at the rest.

Numbering, as shown to people: documents are numbered from 1 in the order they appear
in their file, counting only documents with content (an empty document, such as the one
before a leading ``---``, gets no number); lines are numbered from 1.
"""

from __future__ import annotations

import dataclasses
import os
import re
import stat
import sys
from collections.abc import Iterator, Sequence
from typing import IO, Any

import yaml

from kube_guardrails.audit import safeyaml

STDIN = "-"
STDIN_NAME = "<stdin>"
# What ``kubectl apply -f DIR`` reads (its FileExtensions): a Pod in a .json file next to
# the YAML reaches the cluster as surely, so it is checked too (JSON is YAML).
SUFFIXES = (".yaml", ".yml", ".json")

Loader = safeyaml.Loader
# Per file (and for stdin): far above any real manifest set (the API server stores at
# most 1.5 MB per object), far below what would exhaust a CI runner.
DEFAULT_MAX_FILE_SIZE = 64 * 1024 * 1024

# YAML's line breaks (libyaml: LF, CR, CRLF, NEL, LS, PS) and where a line starts.
_BREAKS = "\n\r\x85\u2028\u2029"
_BREAK = re.compile("\r\n|[" + _BREAKS + "]")
_OTHER_BREAK = re.compile("[\r\x85\u2028\u2029]")
_LINE_START = "(?:^|(?<=[" + _BREAKS + "]))"
# A document marker: "---" (start) or "..." (end) at column 0, alone or followed by
# blanks (content may follow "---" on the same line, e.g. "--- {kind: Pod}"). Written
# as "the first character, then: nothing but a line break (or the start) before it",
# so the regex engine scans for the character instead of testing every position
# (6x faster than a leading line-start group on real manifests).
_MARKER = re.compile(
    "(?:-(?<![^" + _BREAKS + "]-)--|\\.(?<![^" + _BREAKS + "]\\.)\\.\\.)"
    "(?=[ \t" + _BREAKS + "]|\\Z)"
)
# The first line that holds something other than blanks or a comment.
_CONTENT = re.compile(_LINE_START + "[ \t]*[^ \t#" + _BREAKS + "]")


@dataclasses.dataclass(frozen=True)
class Document:
    """One parsed YAML document: where it came from and what it holds."""

    source: str  # the path as given (or found under a given directory), or "<stdin>"
    index: int  # 1-based position among the file's non-empty documents
    line: int  # 1-based line of the document's first content
    obj: Any


@dataclasses.dataclass(frozen=True)
class InputError:
    """Input that could not be checked; ``index`` None means the whole file."""

    source: str
    message: str
    index: int | None = None
    line: int | None = None

    def where(self) -> str:
        out = self.source
        if self.index is not None:
            out += f" document {self.index}"
        if self.line is not None:
            out += f" (line {self.line})"
        return out


def expand(paths: Sequence[str]) -> tuple[list[str], list[InputError]]:
    """The files to read for the given paths, in a stable order, and the bad ones.

    Directories are searched recursively for ``*.yaml``, ``*.yml`` and ``*.json`` files
    (kubectl's set), in sorted order, skipping hidden directories (``.git``, ``.venv``,
    ...); a directory that cannot be listed is an error, not a silent gap. Symbolic links to
    directories are followed, each real directory once (a link loop ends there). Only
    regular files are read: a FIFO would block the run, a device (``/dev/zero``) never
    ends; such a path given by name is an error, one found in a directory is skipped.
    A file named explicitly is read whatever its suffix. A file reached twice is read
    once.
    """
    files: list[str] = []
    errors: list[InputError] = []
    seen: set[str] = set()

    def add(path: str) -> None:
        key = path if path == STDIN else os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            files.append(path)

    for path in paths:
        if path == STDIN:
            add(path)
            continue
        try:
            mode = os.stat(path).st_mode
        except OSError as e:
            message = (
                "no such file or directory"
                if isinstance(e, FileNotFoundError)
                else (f"cannot read: {e.strerror or e}")
            )
            errors.append(InputError(source=display_name(path), message=message))
            continue
        if stat.S_ISDIR(mode):
            for f in _walk(path, errors):
                add(f)
        elif stat.S_ISREG(mode):
            add(path)
        else:
            errors.append(InputError(source=display_name(path), message=_not_regular(mode)))
    return files, errors


def _not_regular(mode: int) -> str:
    what = (
        "a FIFO"
        if stat.S_ISFIFO(mode)
        else "a device"
        if (stat.S_ISCHR(mode) or stat.S_ISBLK(mode))
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "not a regular file"
    )
    return (
        f"not a regular file ({what}); only regular files are read: pipe other input "
        "to 'kube-guardrails audit -'"
    )


def _walk(top: str, errors: list[InputError]) -> Iterator[str]:
    visited: set[tuple[int, int]] = set()

    def unreadable(e: OSError) -> None:
        # os.walk skips what it cannot list; the workloads in there would pass unseen.
        where = e.filename if isinstance(e.filename, str) else top
        errors.append(
            InputError(
                source=display_name(where),
                message=f"cannot read the directory: {e.strerror or e}",
            )
        )

    for root, dirs, names in os.walk(top, followlinks=True, onerror=unreadable):
        try:
            st = os.stat(root)
        except OSError:
            dirs[:] = []
            continue
        if (st.st_dev, st.st_ino) in visited:
            dirs[:] = []  # reached again through a symbolic link: read once, no loop
            continue
        visited.add((st.st_dev, st.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if not name.endswith(SUFFIXES):
                continue
            path = os.path.join(root, name)
            try:
                if not stat.S_ISREG(os.stat(path).st_mode):
                    continue  # a FIFO or device named *.yaml: never opened
            except OSError:
                pass  # a dangling link: read() reports it
            yield path


def read(
    path: str, *, stdin: IO[bytes] | None = None, max_file_size: int = DEFAULT_MAX_FILE_SIZE
) -> tuple[str | None, InputError | None]:
    """The text of a file (``-``: standard input), or an error naming it.

    Never blocks on a FIFO and never reads more than ``max_file_size`` + 1 bytes: the
    file is opened non-blocking and checked to be regular before anything is read, a
    regular file whose size is already above the limit is not read at all, and reads go
    in pieces (one ``read(max_file_size + 1)`` would allocate the whole limit up front:
    ``--max-file-size 1E`` ran out of memory on a 200-byte file).
    """
    name = display_name(path)
    too_large = InputError(
        source=name,
        message=f"larger than {max_file_size} bytes, the per-file limit; not read "
        "(raise it with --max-file-size)",
    )
    try:
        if path == STDIN:
            stream = stdin if stdin is not None else getattr(sys.stdin, "buffer", None)
            if stream is None:
                return None, InputError(source=name, message="standard input is closed")
            data = _read_at_most(stream, max_file_size + 1)
        else:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
            with os.fdopen(fd, "rb") as f:
                st = os.fstat(f.fileno())
                if not stat.S_ISREG(st.st_mode):
                    return None, InputError(source=name, message=_not_regular(st.st_mode))
                if st.st_size > max_file_size:
                    return None, too_large
                # st_size is a hint (files in /proc say 0): the cap holds either way.
                data = _read_at_most(f, max_file_size + 1)
    except (OSError, ValueError) as e:  # ValueError: a closed stream
        message = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        return None, InputError(source=name, message=f"cannot read: {message}")
    if len(data) > max_file_size:
        return None, too_large
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError as e:
        return None, InputError(source=name, message=f"not UTF-8 text (byte {e.start})")


_READ_PIECE = 1 << 20


def _read_at_most(stream: IO[bytes], limit: int) -> bytearray:
    """Up to ``limit`` bytes of ``stream`` (fewer at its end), read a piece at a time."""
    data = bytearray()
    while len(data) < limit:
        piece = stream.read(min(_READ_PIECE, limit - len(data)))
        if not piece:
            break
        data += piece
    return data


def display_name(path: str) -> str:
    """The path as shown in reports: bytes that are not UTF-8 (a file name is any bytes
    on Linux) shown as ``\\xff``, so every report stays valid UTF-8, JSON and SARIF."""
    if path == STDIN:
        return STDIN_NAME
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        try:
            raw = path.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            return path.encode("utf-8", "backslashreplace").decode("utf-8")
        return raw.decode("utf-8", "backslashreplace")
    return path


def split(text: str) -> Iterator[tuple[int, str]]:
    """The documents of a YAML stream as (1-based line where the chunk starts, text).

    A chunk starts right after its ``---`` (so content on the marker's line stays in
    it); directives and comments before a ``---`` stay with the document they
    introduce.
    """
    start, start_line = 0, 1
    line, counted_to = 1, 0
    for m in _MARKER.finditer(text):
        chunk = text[start : m.start()]
        if m.group(0) == "---" and "%" in chunk and _is_prologue(chunk):
            continue  # "%YAML 1.2" then "---": one document
        yield start_line, chunk
        line += _lines(text, counted_to, m.end())
        counted_to = m.end()
        start, start_line = m.end(), line
    yield start_line, text[start:]


def _lines(text: str, start: int, end: int) -> int:
    """How many line breaks (of any YAML kind, CRLF counting once) in text[start:end]."""
    newlines = text.count("\n", start, end)
    if _OTHER_BREAK.search(text, start, end) is None:
        return newlines  # the common case: LF only
    return sum(1 for _ in _BREAK.finditer(text, start, end))


def _is_prologue(chunk: str) -> bool:
    """Only directives (and comments): the start of the document that follows."""
    lines = [s for s in (raw.strip() for raw in chunk.splitlines()) if s and s[0] != "#"]
    return bool(lines) and all(s.startswith("%") for s in lines)


def parse(text: str, source: str) -> Iterator[Document | InputError]:
    """Every non-empty document of a YAML stream, or an error for each bad one."""
    index = 0
    for chunk_line, chunk in split(text):
        content = _CONTENT.search(chunk)
        if content is None:
            continue  # blank or comments only: not a document
        index += 1
        line = chunk_line + _lines(chunk, 0, content.start())
        try:
            obj = safeyaml.load(chunk)
        except yaml.YAMLError as e:
            yield _yaml_error(e, source=source, index=index, line=line, chunk_line=chunk_line)
            continue
        if obj is None:
            index -= 1  # an explicit null document ("~"): nothing to check, no number
            continue
        yield Document(source=source, index=index, line=line, obj=obj)


def _yaml_error(
    e: yaml.YAMLError, *, source: str, index: int, line: int, chunk_line: int
) -> InputError:
    if isinstance(e, safeyaml.UnsafeYAMLError):
        at = line if e.line is None else chunk_line + e.line
        return InputError(source=source, index=index, line=at, message=f"refused: {e.message}")
    if isinstance(e, yaml.MarkedYAMLError):
        parts = [p for p in (e.context, e.problem) if p]
        what = ": ".join(parts) or "malformed YAML"
        mark = e.problem_mark or e.context_mark
        if mark is not None:
            at = chunk_line + mark.line
            return InputError(
                source=source,
                index=index,
                line=at,
                message=f"invalid YAML: {what} (line {at}, column {mark.column + 1})",
            )
        return InputError(source=source, index=index, line=line, message=f"invalid YAML: {what}")
    return InputError(source=source, index=index, line=line, message=f"invalid YAML: {e}")


def load(
    path: str, *, stdin: IO[bytes] | None = None, max_file_size: int = DEFAULT_MAX_FILE_SIZE
) -> Iterator[Document | InputError]:
    """Read and parse one file (or stdin): its documents and errors, in order."""
    text, error = read(path, stdin=stdin, max_file_size=max_file_size)
    if text is None:
        if error is not None:
            yield error
        return
    yield from parse(text, display_name(path))
