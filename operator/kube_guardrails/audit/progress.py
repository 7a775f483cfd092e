"""A one-line progress indicator on stderr, for audits long enough to wonder about.

Only on a terminal (never in CI logs or when stderr is redirected), and only once the
run is big (more than ``MIN_DOCUMENTS`` documents) or slow (more than ``MIN_SECONDS``),
so a quick audit prints nothing extra. Redrawn at most ten times a second; erased at the
end so the report starts on a clean line.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

MIN_DOCUMENTS = 200
MIN_SECONDS = 1.0
INTERVAL = 0.1


class Progress:
    def __init__(
        self,
        stream: TextIO,
        *,
        total_files: int,
        enabled: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.total_files = total_files
        self.enabled = stream.isatty() if enabled is None else enabled
        self.clock = clock
        self.started = clock()
        self.last_draw = 0.0
        self.shown = False

    def update(self, *, files: int, documents: int) -> None:
        if not self.enabled:
            return
        now = self.clock()
        big = documents > MIN_DOCUMENTS or now - self.started > MIN_SECONDS
        if not big or now - self.last_draw < INTERVAL:
            return
        self.last_draw = now
        self.shown = True
        rate = documents / max(now - self.started, 1e-9)
        self.stream.write(
            f"\raudit: {files}/{self.total_files} files, {documents} documents "
            f"({rate:,.0f}/s)\033[K"
        )
        self.stream.flush()

    def done(self) -> None:
        if self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
