"""The audit's report sink: a short write is retried, never silently dropped."""

from __future__ import annotations

import io

import pytest

from kube_guardrails.audit import command


class ShortWrites(io.RawIOBase):
    """A pipe that takes at most ``step`` bytes per write, then fails after ``limit``."""

    def __init__(self, *, step: int, limit: int) -> None:
        self.data = bytearray()
        self.step, self.limit = step, limit

    def writable(self) -> bool:
        return True

    def write(self, b: object) -> int:
        view = memoryview(b)  # type: ignore[arg-type]
        if len(self.data) >= self.limit:
            raise BrokenPipeError(32, "Broken pipe")
        n = min(self.step, len(view), self.limit - len(self.data))
        self.data += view[:n]
        return n


@pytest.mark.parametrize(("step", "limit", "delivered"), [(7, 10**6, True), (7, 50, False)])
def test_whole_writes(step: int, limit: int, delivered: bool) -> None:
    raw = ShortWrites(step=step, limit=limit)
    stream = io.TextIOWrapper(raw, encoding="utf-8")  # type: ignore[arg-type]
    text = "x" * 1000
    if delivered:
        command.WholeWrites(stream).write(text)
        stream.flush()
        assert bytes(raw.data) == text.encode()
    else:
        with pytest.raises(BrokenPipeError):
            command.WholeWrites(stream).write(text)
