"""A byte-count progress bar for command lines: done / total, MB/s and ETA on stderr.

On a terminal the bar redraws in place at most ten times a second; elsewhere (CI logs, pipes) it writes one plain line
per tenth of the transfer, so logs stay short. Call it as the ``progress`` callback of the download functions.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

_REDRAW_S = 0.1
_MB = 1_000_000


def format_bytes(n: int) -> str:
    """``12.3 MB`` style, decimal megabytes like the sizes shown by pip and browsers."""
    return f"{n / _MB:.1f} MB"


class ProgressBar:
    """``bar(done, total)`` draws; ``bar.close()`` ends the line. ``total`` may be None (size unknown)."""

    def __init__(self, label: str, *, stream: TextIO | None = None, clock=time.monotonic) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._clock = clock
        self._start = clock()
        self._last_draw = float("-inf")
        self._last_tenth = -1
        self._done = 0
        self._total: int | None = None
        self._drawn = False

    def __call__(self, done: int, total: int | None) -> None:
        self._done, self._total = done, total
        now = self._clock()
        if self._tty:
            if now - self._last_draw >= _REDRAW_S or (total is not None and done >= total):
                self._last_draw = now
                self.stream.write("\r" + self.render(now) + "\x1b[K")
                self.stream.flush()
                self._drawn = True
            return
        # Plain output: one line per 10 % (or per 10 MB when the size is unknown).
        tenth = done * 10 // total if total else done // (10 * _MB)
        if tenth > self._last_tenth:
            self._last_tenth = tenth
            self.stream.write(self.render(now) + "\n")
            self.stream.flush()

    def render(self, now: float | None = None) -> str:
        """One line: label, bytes done / total, speed and time left."""
        elapsed = max((self._clock() if now is None else now) - self._start, 1e-9)
        speed = self._done / elapsed
        size = format_bytes(self._done) + (f" / {format_bytes(self._total)}" if self._total else "")
        text = f"{self.label}: {size}  {speed / _MB:.1f} MB/s"
        if self._total and speed > 0 and self._done < self._total:
            left = int((self._total - self._done) / speed)
            text += f"  ETA {left // 60}:{left % 60:02d}"
        return text

    def close(self) -> None:
        """Finish the terminal line so the next output starts on its own line."""
        if self._tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
