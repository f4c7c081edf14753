"""The progress display: a live line with the loss on a terminal, nothing with --quiet."""

from __future__ import annotations

import io

from nnlab.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_live_line_with_the_loss():
    out = Terminal()
    p = Progress(epochs=10, batches=5, stream=out, delay=0.0)
    p.batch(epoch=2, index=4, loss=0.12345)
    p.close()
    text = out.getvalue()
    assert "\repoch 3/10" in text and "loss 0.1235" in text and "30%" in text and "eta" in text


def test_a_log_gets_epoch_lines_now_and_then():
    out = io.StringIO()
    p = Progress(epochs=3, batches=1, stream=out, delay=0.0, log_every=0.0)
    p.epoch(0, {"epoch": 1, "loss": 0.5, "accuracy": 0.75, "lr": 0.1, "seconds": 0.01})
    assert out.getvalue() == "epoch 1/3  loss 0.5  accuracy 0.75\n"


def test_short_runs_and_quiet_runs_print_nothing():
    out = Terminal()
    p = Progress(epochs=10, batches=5, stream=out)  # within the first second: nothing yet
    p.batch(0, 0, 1.0)
    quiet = Terminal()
    q = Progress(epochs=10, batches=5, enabled=False, stream=quiet, delay=0.0)
    q.batch(0, 0, 1.0)
    q.epoch(0, {"epoch": 1, "loss": 1.0})
    assert out.getvalue() == "" and quiet.getvalue() == ""
