"""Progress on stderr, one display for everything that takes a while: training, sweeps
(``nnlab.sweeps.display``) and downloads. On a terminal a live line is redrawn in place (at
most every ``interval`` seconds) under the lines that stay; in a log (not a terminal) only the
lines that stay are written."""

from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO


def clock(seconds: float) -> str:
    """``1:02:03`` or ``2:03``: a duration as a clock."""
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def bar(fraction: float, width: int = 20) -> str:
    """``[#####               ]``: a fraction as a bar of ``width`` characters."""
    return f"[{'#' * int(min(1.0, max(0.0, fraction)) * width):<{width}}]"


class LiveLine:
    """A live line on a terminal (redrawn in place, throttled) with permanent lines above it.

    ``enabled=False`` writes nothing; on a stream that is not a terminal the live line is never
    drawn and ``say`` writes plain lines."""

    def __init__(
        self,
        stream: TextIO | None = None,
        enabled: bool = True,
        interval: float = 0.1,
        delay: float = 0.0,
    ):
        """``delay``: the first draw comes no sooner than this many seconds from now."""
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and self.stream.isatty()
        self.interval = interval
        self._next = time.perf_counter() + delay
        self._drawn = False
        self.columns = shutil.get_terminal_size((120, 24)).columns if self.tty else 120

    def due(self) -> bool:
        """Whether a throttled redraw would draw now (for callers whose text is costly)."""
        return self.tty and time.perf_counter() >= self._next

    def draw(self, text: str, force: bool = False) -> None:
        """Redraw the live line (a terminal only; at most every ``interval`` s unless forced)."""
        if not self.tty:
            return
        now = time.perf_counter()
        if now < self._next and not force:
            return
        self._next = now + self.interval
        self.stream.write("\r" + text[: self.columns - 1] + "\x1b[K")
        self.stream.flush()
        self._drawn = True

    def say(self, text: str) -> None:
        """A line that stays (above the live line, which the next ``draw`` puts back)."""
        if not self.enabled:
            return
        self.clear()
        self.stream.write(text + "\n")
        self.stream.flush()

    def clear(self) -> None:
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False


class Progress:
    """Training progress. On a terminal, a live line: the epoch, a bar, the running batch loss,
    the metrics of the last finished epoch (validation included) and the time left. In a log
    and on a terminal alike, an epoch's line stays now and then: at most one every
    ``log_every`` seconds (2 on a terminal, 5 in a log), and the last epoch's. Shown only once a
    run has taken ``delay`` seconds, so short runs print nothing."""

    def __init__(
        self,
        epochs: int,
        batches: int,
        enabled: bool = True,
        stream: TextIO | None = None,
        delay: float = 1.0,
        log_every: float | None = None,
    ):
        self.epochs, self.batches = epochs, batches
        self.start = time.perf_counter()
        self.line = LiveLine(stream, enabled, delay=delay)
        self.enabled, self.tty = enabled, self.line.tty
        self.delay = delay
        self.log_every = log_every if log_every is not None else 2.0 if self.tty else 5.0
        self._last_log = self.start
        self.first_epoch = 0
        self.last = ""  # the metrics of the last finished epoch, as text

    def eta(self, epoch: int, fraction: float = 0.0) -> float:
        """Seconds left, from the pace of this session: ``epoch`` (0-based) is ``fraction``
        done."""
        done = (epoch - self.first_epoch) + fraction
        left = self.epochs - self.first_epoch - done
        return (time.perf_counter() - self.start) * left / done if done > 0 else 0.0

    def batch(self, epoch: int, index: int, loss: float) -> None:
        """After batch ``index`` (0-based) of ``epoch`` (0-based): redraw the live line."""
        if not self.line.due():
            return
        part = (index + 1) / self.batches
        frac = min(1.0, (epoch + part) / self.epochs)
        last = f" | epoch {epoch}: {self.last}" if self.last else ""
        self.line.draw(
            f"epoch {epoch + 1}/{self.epochs} {bar(frac, 12)} {frac:4.0%} eta "
            f"{clock(self.eta(epoch, part))} | batch loss {loss:.4g}{last}"
        )

    def epoch(self, epoch: int, row: dict) -> None:
        """After ``epoch`` (0-based) with its metrics ``row``: keep its line when one is due."""
        if not self.enabled:
            return
        self.last = "  ".join(
            f"{k} {v:.4g}" for k, v in row.items() if k not in ("epoch", "seconds", "lr")
        )
        now = time.perf_counter()
        final = epoch + 1 == self.epochs
        if now - self.start < self.delay or (now - self._last_log < self.log_every and not final):
            return
        self._last_log = now
        left = "" if final else f", eta {clock(self.eta(epoch + 1))}"
        self.line.say(
            f"epoch {epoch + 1}/{self.epochs}  {self.last}  ({clock(now - self.start)}{left})"
        )

    def close(self) -> None:
        self.line.clear()


class Transfer:
    """Download progress: a live bar on a terminal, a line per file when it ends."""

    def __init__(self, label: str, total: int | None, stream: TextIO | None = None):
        self.label, self.total = label, total
        self.line = LiveLine(stream)
        self.done = 0

    def update(self, n: int) -> None:
        self.done += n
        if not self.line.due():
            return
        mb = self.done / 1e6
        if self.total:
            frac = self.done / self.total
            text = (
                f"{self.label} {bar(frac)} {min(1.0, frac):4.0%} {mb:.1f}/{self.total / 1e6:.1f} MB"
            )
        else:
            text = f"{self.label} {mb:.1f} MB"
        self.line.draw(text)

    def close(self, note: str) -> None:
        self.line.say(f"{self.label}: {note}")
