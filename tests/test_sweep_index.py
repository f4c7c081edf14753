"""The sweep index (nnlab/sweeps/index.py): a snapshot plus an append-only log, O(1) per trial
event. What is read back after a writer is killed at any moment (a torn last line, a kill
between the snapshot and the log's truncation, real SIGKILLs of a writing process with a reader
reading at the same time), and an index.json of an earlier nnlab read once and rewritten."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

from conftest import ROOT, nnlab_env
from nnlab.sweeps.index import INDEX_FORMAT, IndexWriter, read_index

FIELDS = ("number", "hash", "run", "status", "attempts", "started", "finished", "error")


def entry(n: int, attempts: int = 1, status: str = "running") -> dict:
    h = f"{n:012x}"
    return {
        "number": n,
        "hash": h,
        "run": f"trials/{n:03d}-{h}",
        "status": status,
        "attempts": attempts,
        "started": f"t{attempts}",
        "finished": None if status == "running" else f"f{attempts}",
        "error": None,
        "overrides": {"optimizer.lr": n / 10},
    }


def test_the_index_is_the_snapshot_then_the_newer_log_lines(tmp_path):
    w = IndexWriter(tmp_path, "s")
    w.open({e["hash"]: e for e in (entry(1), entry(2))})
    assert (tmp_path / "index.log").read_bytes() == b""
    done = entry(1, status="completed")
    w.entries[done["hash"]] = done
    w.record(done)
    snapshot = json.loads((tmp_path / "index.json").read_text())
    assert snapshot["format"] == INDEX_FORMAT and snapshot["seq"] == 0  # not rewritten
    assert [e["status"] for e in snapshot["trials"]] == ["running", "running"]
    entries, warnings = read_index(tmp_path)  # the log's line on top of the snapshot
    assert warnings == [] and entries[done["hash"]] == done
    w.close()
    snapshot = json.loads((tmp_path / "index.json").read_text())
    assert snapshot["seq"] == 1 and snapshot["trials"][0] == done
    assert (tmp_path / "index.log").read_bytes() == b""
    assert read_index(tmp_path)[0] == entries


def test_a_torn_last_line_is_left_out_and_the_entry_keeps_every_field(tmp_path):
    w = IndexWriter(tmp_path, "s")
    first = entry(1, attempts=3, status="failed")
    w.open({first["hash"]: first})
    w.record(entry(1, attempts=4))
    line = json.dumps({"seq": 2, "trial": entry(1, attempts=5, status="completed")})
    with open(tmp_path / "index.log", "a") as f:
        f.write(line[: len(line) // 2])  # a writer killed in the middle of its line
    entries, warnings = read_index(tmp_path)
    (e,) = entries.values()
    assert e == entry(1, attempts=4) and all(k in e for k in FIELDS)
    assert warnings == []  # an unfinished last line is what a kill leaves: no warning


def test_a_kill_between_the_snapshot_and_the_truncation_counts_nothing_twice(tmp_path):
    w = IndexWriter(tmp_path, "s")
    w.open({})
    for n in range(1, 4):
        w.entries[entry(n)["hash"]] = entry(n)
        w.record(entry(n))
    log = (tmp_path / "index.log").read_bytes()
    w.snapshot()  # seq 3, then the log is emptied; put its lines back as if killed before
    (tmp_path / "index.log").write_bytes(log + b'{"seq": 4, "trial": ' + b"{}}\n")
    entries, warnings = read_index(tmp_path)
    assert sorted(entries) == sorted(entry(n)["hash"] for n in range(1, 4))
    assert any("damaged" in w for w in warnings)  # a line without an entry is reported


def test_damaged_lines_and_entries_outside_trials_are_left_out(tmp_path):
    (tmp_path / "index.json").write_text('{"trials": [')  # damaged snapshot
    bad = {**entry(2), "run": "../../victim"}
    lines = [{"seq": 1, "trial": entry(1)}, "garbage", {"seq": 2, "trial": bad}]
    text = "".join((json.dumps(x) if isinstance(x, dict) else x) + "\n" for x in lines)
    (tmp_path / "index.log").write_text(text)
    entries, warnings = read_index(tmp_path)
    assert list(entries) == [entry(1)["hash"]]
    assert len(warnings) == 3  # the snapshot, a damaged line, an entry outside trials/


def test_an_index_json_of_an_earlier_nnlab_is_read_as_a_snapshot(tmp_path):
    old = {"format": "nnlab-sweep-index/1", "name": "s", "updated": "x"}
    old["trials"] = [entry(1, attempts=2, status="completed"), entry(2, status="failed")]
    (tmp_path / "index.json").write_text(json.dumps(old, indent=2))
    entries, warnings = read_index(tmp_path)
    assert warnings == [] and list(entries.values()) == old["trials"]


WRITER = """
import random, sys, time
from pathlib import Path
from nnlab.sweeps import index
from nnlab.sweeps.folder import remove_stale
index.SNAPSHOT_EVERY = 0.02  # snapshots all the time: kills land in them too
folder = Path(sys.argv[1])
remove_stale(folder, every=True)
entries, _ = index.read_index(folder)
w = index.IndexWriter(folder, "s")
w.open(entries)
print("ready", flush=True)
rng = random.Random()
while True:
    n = rng.randrange(1, 41)
    h = f"{n:012x}"
    e = dict(entries.get(h) or {"number": n, "hash": h, "run": f"trials/{n:03d}-{h}"})
    a = e.get("attempts", 0) + 1
    e.update(attempts=a, status="running", started=f"s{a}", finished=None, check=f"{n}-{a}")
    entries[h] = e
    w.entries[h] = e
    w.record(e)
"""


def test_a_writer_killed_at_random_moments_leaves_a_consistent_index(tmp_path):
    """A process writing events as fast as it can, snapshots included, killed with SIGKILL
    at random moments; a reader reads while it writes. Every read is a consistent index (each
    entry whole, its fields from one event), attempts never go back between reads, and no
    temporary file outlives the next start."""
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    folder = tmp_path / "sweep"
    folder.mkdir()
    rng = random.Random(7)
    seen: dict[str, int] = {}

    def check() -> None:
        entries, warnings = read_index(folder)
        assert not [w for w in warnings if "damaged" in w], warnings
        for h, e in entries.items():
            n, a = e["number"], e["attempts"]
            assert e["check"] == f"{n}-{a}" and e["started"] == f"s{a}" and e["hash"] == h
            assert a >= seen.get(h, 0), "an event that was read is lost"
            seen[h] = a

    for _ in range(8):
        proc = subprocess.Popen(
            [sys.executable, str(script), str(folder)],
            env=nnlab_env(),
            cwd=ROOT,
            stdout=subprocess.PIPE,
        )
        assert proc.stdout.readline() == b"ready\n"
        assert not list(folder.glob(".*.tmp-*"))  # the last kill's were removed at start
        deadline = time.monotonic() + rng.uniform(0.05, 0.4)
        while time.monotonic() < deadline:
            check()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        proc.stdout.close()
        check()
    assert sum(seen.values()) > 100  # it did write


def test_the_cost_of_an_event_does_not_grow_with_the_index(tmp_path):
    """O(1) per event: an event appends one line, of the same size whether the index holds
    10 trials or 2000; index.json is rewritten only by the snapshots (every few seconds)."""
    sizes = []
    for n in (10, 2000):
        folder = tmp_path / str(n)
        folder.mkdir()
        w = IndexWriter(folder, "s")
        w.open({entry(i)["hash"]: entry(i) for i in range(1, n + 1)})
        before = (folder / "index.json").read_bytes()
        w.record(entry(1, attempts=2))
        sizes.append((folder / "index.log").stat().st_size)
        assert (folder / "index.json").read_bytes() == before
        w.close()
    assert sizes[0] == sizes[1] > 0
