"""One YAML document to Python objects, bounded against hostile input.

``yaml.load`` trusts its input in three ways that a file from a pull request must not
be trusted: aliases are shared, so a few hundred bytes of nested aliases (a "billion
laughs" bomb) become billions of nodes as soon as anything walks the result; nesting
has no limit, so a few KB of ``[[[[...`` exhaust the recursion of every later walker;
and a duplicate mapping key silently keeps the last value, so a reviewer may read
``privileged: false`` while the cluster gets ``true``.

This builds the objects from libyaml's event stream (the C parser when PyYAML has it;
the parser keeps no recursion of its own) with an explicit stack, and refuses, with an
error naming the line:

- aliasing beyond the ratio the Kubernetes API server's YAML decoder (go-yaml, through
  sigs.k8s.io/yaml) allows: alias expansions may make up 99% of a small document's
  nodes, falling linearly to 10% at 4 million nodes; recursive aliases are refused;
- nesting deeper than :data:`MAX_DEPTH` (a Kubernetes object is rarely deeper than 20);
- duplicate keys in a mapping (``kubectl apply`` refuses them too: "mapping key already
  defined").

Scalars are resolved and constructed by PyYAML's safe loader, so ``yes``, ``0x10`` and
``.nan`` mean what they mean to ``yaml.safe_load``, with two exceptions where that would
differ from what the cluster gets (kubectl decodes YAML with go-yaml v2 through
sigs.k8s.io/yaml): a timestamp (``2027-01-31``) stays the string it is written as, and
``!!binary`` is the text it encodes (invalid UTF-8 as U+FFFD, as Go's JSON encoder
writes it), so ``kind: !!binary UG9k`` is the Pod it is to kubectl, not bytes that no
check looks at. Merge keys (``<<``) are applied with the usual precedence (explicit keys
win, earlier merges win), and a mapping that go-yaml v2 (kubectl) would read otherwise
is refused (see :func:`_apply_merges`).

The caller splits a stream into documents; a second document found here anyway (a
marker the splitter did not see) is an error, never dropped: a document nobody checked
must not pass.
"""

from __future__ import annotations

from typing import Any

import yaml

# libyaml's parser when PyYAML was built with it; the pure-Python one otherwise.
Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

MAX_DEPTH = 200

_STR = "tag:yaml.org,2002:str"
_BINARY = "tag:yaml.org,2002:binary"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_MERGE = "tag:yaml.org,2002:merge"
_MERGE_KEY = object()  # stands for "<<" while its value is read
_SEQ_TAGS = (None, "!", "tag:yaml.org,2002:seq")
_MAP_TAGS = (None, "!", "tag:yaml.org,2002:map")


class UnsafeYAMLError(yaml.YAMLError):
    """A document refused for its shape (aliasing, depth, duplicate keys)."""

    def __init__(self, message: str, *, line: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line  # 0-based within the parsed text, as PyYAML's marks

    def __str__(self) -> str:
        return self.message


def allowed_alias_ratio(decoded: int) -> float:
    """go-yaml v3 ``allowedAliasRatio``: the share of nodes that may come from aliases."""
    if decoded <= 400_000:
        return 0.99
    if decoded >= 4_000_000:
        return 0.10
    return 0.10 + 0.89 * (1 - (decoded - 400_000) / 3_600_000)


class _Frame:
    __slots__ = ("anchor", "has_key", "key", "line", "merges", "obj", "size")

    def __init__(self, obj: Any, anchor: str | None, line: int) -> None:
        self.obj = obj
        self.anchor = anchor
        self.line = line
        self.size = 1
        self.key: Any = None
        self.has_key = False
        # Per "<<" key, in order: its mappings and how many explicit keys came before it.
        self.merges: list[tuple[list[dict[Any, Any]], int, int]] | None = None


def load(text: str) -> Any:
    """The first document of ``text`` as Python objects (None when empty).

    Raises ``yaml.YAMLError`` (PyYAML's own for syntax, :class:`UnsafeYAMLError` for
    the limits above).
    """
    loader = Loader(text)
    try:
        return _build(loader)
    finally:
        loader.dispose()


def _build(loader: Any) -> Any:
    anchors: dict[str, tuple[Any, int]] = {}
    open_anchors: set[str] = set()
    stack: list[_Frame] = []
    decoded = 0  # nodes as a walker would see them (aliases expanded)
    aliased = 0  # of which came from aliases
    result: Any = None
    done = False
    get_event = loader.get_event
    resolve = loader.resolve
    constructors = loader.yaml_constructors
    scalar_node = yaml.ScalarNode
    scalar_event = yaml.ScalarEvent
    alias_event = yaml.AliasEvent
    mapping_start = yaml.MappingStartEvent
    sequence_start = yaml.SequenceStartEvent
    mapping_end = yaml.MappingEndEvent
    sequence_end = yaml.SequenceEndEvent
    document_start = yaml.DocumentStartEvent
    document_end = yaml.DocumentEndEvent
    stream_end = yaml.StreamEndEvent

    while True:
        event = get_event()
        cls = type(event)
        size = 1
        is_merge_key = False
        if cls is scalar_event:
            tag = event.tag
            if tag is None or tag == "!":
                tag = resolve(scalar_node, event.value, event.implicit)
            if tag == _STR:
                value: Any = event.value
            elif tag == _MERGE and stack and stack[-1].merges is not None and not stack[-1].has_key:
                value = None
                is_merge_key = True
            elif tag == _TIMESTAMP:
                value = event.value  # go-yaml v2 keeps timestamps as strings
            elif tag == _BINARY:
                node = scalar_node(tag, event.value, event.start_mark, event.end_mark, event.style)
                value = constructors[tag](loader, node).decode("utf-8", "replace")
            else:
                node = scalar_node(tag, event.value, event.start_mark, event.end_mark, event.style)
                construct = constructors.get(tag) or constructors[None]
                value = construct(loader, node)
            decoded += 1
            if event.anchor is not None:
                anchors[event.anchor] = (value, 1)
        elif cls is alias_event:
            name = event.anchor
            if name in open_anchors:
                raise UnsafeYAMLError(
                    f"recursive alias *{name} (an alias inside its own anchor)",
                    line=event.start_mark.line,
                )
            found = anchors.get(name)
            if found is None:
                raise UnsafeYAMLError(f"unknown alias *{name}", line=event.start_mark.line)
            value, size = found
            decoded += size
            aliased += size
            if (
                aliased > 100
                and decoded > 1000
                and aliased / decoded > allowed_alias_ratio(decoded)
            ):
                raise UnsafeYAMLError(
                    f"excessive aliasing: *{name} would expand the document to more than "
                    f"{decoded} nodes ({aliased} from aliases; the Kubernetes API server "
                    "refuses such documents too)",
                    line=event.start_mark.line,
                )
        elif cls is mapping_start or cls is sequence_start:
            line = event.start_mark.line
            if len(stack) >= MAX_DEPTH:
                raise UnsafeYAMLError(
                    f"nesting deeper than {MAX_DEPTH} levels (no Kubernetes object needs that)",
                    line=line,
                )
            if cls is mapping_start:
                if event.tag not in _MAP_TAGS:
                    raise UnsafeYAMLError(f"unsupported tag {event.tag} on a mapping", line=line)
                frame = _Frame({}, event.anchor, line)
                frame.merges = []
            else:
                if event.tag not in _SEQ_TAGS:
                    raise UnsafeYAMLError(f"unsupported tag {event.tag} on a sequence", line=line)
                frame = _Frame([], event.anchor, line)
            if event.anchor is not None:
                open_anchors.add(event.anchor)
            decoded += 1
            stack.append(frame)
            continue
        elif cls is mapping_end or cls is sequence_end:
            frame = stack.pop()
            value, size = frame.obj, frame.size
            if frame.merges:
                _apply_merges(value, frame.merges)
            if frame.anchor is not None:
                open_anchors.discard(frame.anchor)
                anchors[frame.anchor] = (value, size)
        elif cls is document_end:
            done = True
            continue
        elif cls is stream_end:
            return result
        elif cls is document_start and done:
            raise UnsafeYAMLError(
                "a second document starts here without a '---' line that kube-guardrails "
                "can see (a line break other than LF or CRLF?); not checked",
                line=event.start_mark.line,
            )
        else:  # stream and (first) document start
            continue
        if not stack:
            result = value
            continue
        parent = stack[-1]
        parent.size += size
        obj = parent.obj
        if parent.merges is None:
            obj.append(value)
        elif not parent.has_key:
            if is_merge_key:
                parent.key = _MERGE_KEY
            else:
                try:
                    hash(value)
                except TypeError:
                    raise UnsafeYAMLError(
                        "a mapping key must be a scalar, not a list or mapping",
                        line=event.start_mark.line,
                    ) from None
                if value in obj:
                    raise UnsafeYAMLError(
                        f"duplicate key {_short(value)} in the mapping at line "
                        f"{parent.line + 1} (the API server would refuse it)",
                        line=event.start_mark.line,
                    )
                parent.key = value
            parent.has_key = True
        else:
            key = parent.key
            parent.has_key = False
            if key is _MERGE_KEY:
                sources = value if isinstance(value, list) else [value]
                for source in sources:
                    if not isinstance(source, dict):
                        raise UnsafeYAMLError(
                            "a merge key (<<) takes a mapping or a list of mappings",
                            line=event.start_mark.line,
                        )
                parent.merges.append((sources, len(obj), event.start_mark.line))
            else:
                obj[key] = value
            parent.key = None


def _apply_merges(
    target: dict[Any, Any], merges: list[tuple[list[dict[Any, Any]], int, int]]
) -> None:
    """Merge keys as the YAML spec and go-yaml v3 (kustomize) apply them, refusing a
    mapping whose result go-yaml v2 (kubectl) would see differently.

    Spec and v3: explicit keys win, then earlier merges. v2 applies every entry in
    order, each "<<" overwriting what came before it: ``privileged: false`` followed by
    ``<<: {privileged: true}`` is false here and true in the cluster after ``kubectl
    apply``. Such a mapping is refused rather than judged by either reading.
    """
    explicit = list(target.items())
    for sources, _before, _line in merges:
        for source in sources:
            for k, v in source.items():
                if k not in target:
                    target[k] = v
    # go-yaml v2's reading: explicit keys and merges in document order; within one "<<"
    # list the earlier mapping wins (v2 applies the list backwards).
    v2: dict[Any, Any] = {}
    done = 0
    for sources, before, _line in merges:
        v2.update(explicit[done:before])
        done = before
        for source in reversed(sources):
            v2.update(source)
    v2.update(explicit[done:])
    for k, v in v2.items():
        ours = target[k]
        if ours is not v and ours != v:
            raise UnsafeYAMLError(
                f"key {_short(k)} gets a different value from a merge key (<<) than it "
                "is given in the mapping or by another merge, and YAML readers disagree "
                "on which wins (kubectl's takes the later one, kustomize's the explicit "
                "one): set it once",
                line=merges[0][2],
            )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
