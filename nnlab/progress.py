"""Progress of a training run on stderr: a live line on a terminal, a line now and then in a log."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Shown only once a run has taken ``delay`` seconds, so short runs print nothing."""

    def __init__(
        self,
        epochs: int,
        batches: int,
        enabled: bool = True,
        stream: TextIO | None = None,
        delay: float = 1.0,
        log_every: float = 5.0,
    ):
        self.epochs, self.batches = epochs, batches
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and self.stream.isatty()
        self.delay, self.log_every = delay, log_every
        self.start = time.perf_counter()
        self._next_draw = self.start + delay
        self._last_log = self.start
        self._drawn = False
        self.first_epoch = 0

    def batch(self, epoch: int, index: int, loss: float) -> None:
        """After batch ``index`` (0-based) of ``epoch`` (0-based)."""
        if not self.tty:
            return
        now = time.perf_counter()
        if now < self._next_draw:
            return
        self._next_draw = now + 0.1
        done = (epoch - self.first_epoch) + (index + 1) / self.batches
        total = self.epochs - self.first_epoch
        frac = min(1.0, done / total)
        eta = (now - self.start) * (1 - frac) / frac if frac > 0 else 0.0
        bar = "#" * int(frac * 20)
        line = (
            f"\repoch {epoch + 1}/{self.epochs} [{bar:<20}] {frac:4.0%} "
            f"loss {loss:.4g}  eta {_clock(eta)} "
        )
        self.stream.write(line)
        self.stream.flush()
        self._drawn = True

    def epoch(self, epoch: int, row: dict) -> None:
        if not self.enabled or self.tty:
            return
        now = time.perf_counter()
        last = epoch + 1 == self.epochs
        if now - self.start < self.delay or (now - self._last_log < self.log_every and not last):
            return
        self._last_log = now
        shown = "  ".join(
            f"{k} {v:.4g}" for k, v in row.items() if k not in ("epoch", "seconds", "lr")
        )
        self.stream.write(f"epoch {epoch + 1}/{self.epochs}  {shown}\n")
        self.stream.flush()

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\r" + " " * 79 + "\r")
            self.stream.flush()
