"""The progress display: a live line with the loss, the last epoch's metrics and the time left
on a terminal, epoch lines that stay now and then, nothing for short or quiet runs, and the way
to resume after Ctrl-C."""

from __future__ import annotations

import io
import re

from nnlab.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


ROW = {"epoch": 1, "loss": 0.5, "accuracy": 0.75, "val_loss": 0.625, "val_accuracy": 0.7,
       "lr": 0.1, "seconds": 0.01}  # fmt: skip


def test_a_terminal_gets_a_live_line_with_the_loss_and_the_last_epoch(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    out = Terminal()
    p = Progress(epochs=10, batches=5, stream=out, delay=0.0, log_every=1e9)
    p.epoch(1, {**ROW, "epoch": 2})  # epoch 2 of 10 ended: not the last, no line is due
    assert out.getvalue() == ""
    p.batch(epoch=2, index=4, loss=0.12345)
    p.close()
    text = out.getvalue()
    assert "\repoch 3/10" in text and "batch loss 0.1235" in text and "30%" in text
    # the last finished epoch's metrics, validation included, and the time left
    assert "epoch 2: loss 0.5  accuracy 0.75  val_loss 0.625  val_accuracy 0.7" in text
    assert re.search(r"eta \d+:\d\d", text) and "lr" not in text and "seconds" not in text
    monkeypatch.setenv("COLUMNS", "60")  # a narrow terminal: the line is cut, never wrapped
    narrow = Terminal()
    p = Progress(epochs=10, batches=5, stream=narrow, delay=0.0, log_every=1e9)
    p.epoch(1, {**ROW, "epoch": 2})
    p.batch(epoch=2, index=4, loss=0.12345)
    line = narrow.getvalue().split("\r")[1].removesuffix("\x1b[K")
    assert len(line) == 59 and re.search(r"eta \d+:\d\d", line)


def test_epoch_lines_stay_at_their_cadence_and_for_the_last_epoch():
    out = io.StringIO()  # a log: no live line, only the lines that stay
    p = Progress(epochs=3, batches=1, stream=out, delay=0.0, log_every=0.0)
    p.epoch(0, ROW)
    first = out.getvalue()
    assert first.startswith("epoch 1/3  loss 0.5  accuracy 0.75  val_loss 0.625  val_accuracy 0.7")
    assert re.search(r"\(\d+:\d\d, eta \d+:\d\d\)\n$", first)
    slow = io.StringIO()
    q = Progress(epochs=3, batches=1, stream=slow, delay=0.0, log_every=1e9)
    for e in range(3):
        q.epoch(e, {**ROW, "epoch": e + 1})
    lines = slow.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("epoch 3/3") and "eta" not in lines[0]


def test_short_runs_and_quiet_runs_print_nothing():
    out = Terminal()
    p = Progress(epochs=10, batches=5, stream=out)  # within the first second: nothing yet
    p.batch(0, 0, 1.0)
    p.epoch(9, {**ROW, "epoch": 10})
    quiet = Terminal()
    q = Progress(epochs=10, batches=5, enabled=False, stream=quiet, delay=0.0)
    q.batch(0, 0, 1.0)
    q.epoch(0, {"epoch": 1, "loss": 1.0})
    assert out.getvalue() == "" and quiet.getvalue() == ""
