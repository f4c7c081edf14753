"""A sweep's progress on stderr: a line per finished trial and, on a terminal, a live status
line below them, drawn with the one display of ``nnlab.progress``."""

from __future__ import annotations

import time
from typing import TextIO

from nnlab.progress import LiveLine, clock
from nnlab.runs import Status


class SweepProgress:
    """A sweep's progress: a line per finished trial and, on a terminal, a live status line
    below them (trials done, failed and running, time elapsed and left)."""

    def __init__(
        self,
        name: str,
        total: int,
        skipped: int,
        todo: int,
        stream: TextIO | None = None,
        quiet: bool = False,
    ):
        self.name, self.total, self.skipped, self.todo = name, total, skipped, todo
        self.line = LiveLine(stream, not quiet, interval=0.5)
        self.enabled, self.tty = self.line.enabled, self.line.tty
        self.start = time.perf_counter()
        self.finished = 0
        self.counts: dict[str, int] = {}
        self.running = 0
        self._width = len(str(total))

    def announce(self, notes: list[str]) -> None:
        """The sweep's notes, and how many trials it skips as done already."""
        for note in notes:
            self.say(f"note: {note}")
        if self.skipped:
            self.say(
                f"sweep {self.name}: {self.skipped} of {self.total} trials done "
                f"already (skipped), {self.todo} to run"
            )

    def left(self) -> str:
        if not self.finished:
            return "?"
        rate = self.finished / (time.perf_counter() - self.start)
        return clock((self.todo - self.finished) / rate)

    def status_line(self) -> str:
        done = self.skipped + self.finished
        bad = self.counts.get(Status.FAILED, 0) + self.counts.get(Status.INTERRUPTED, 0)
        elapsed = clock(time.perf_counter() - self.start)
        return (
            f"sweep {self.name}: {done}/{self.total} done, {bad} failed, {self.running} running"
            f"  {elapsed} elapsed, ~{self.left()} left"
        )

    def say(self, text: str) -> None:
        self.line.say(text)
        self.tick(force=True)

    def trial(
        self,
        label: str,
        status: str,
        metric: tuple[str, float] | None = None,
        seconds: float | None = None,
        error: str | None = None,
    ) -> None:
        """A trial ended: ``status``, its headline ``metric``, its time and error."""
        self.finished += 1
        self.counts[status] = self.counts.get(status, 0) + 1
        if not self.enabled:
            return
        done = self.skipped + self.finished
        line = f"[{done:>{self._width}}/{self.total}] {label}: {status}"
        if metric:
            line += f"  {metric[0]} {metric[1]:.4f}"
        if seconds is not None:
            line += f"  {seconds:.1f} s"
        if not self.tty:
            line += f"  (~{self.left()} left)"
        if error and status in (Status.FAILED, Status.INTERRUPTED):
            line += f"\n    {error}"
        self.say(line)

    def tick(self, force: bool = False) -> None:
        self.line.draw(self.status_line(), force=force)

    def close(self) -> None:
        self.line.clear()
