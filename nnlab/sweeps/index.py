"""A sweep's index: an entry per trial (number, hash, overrides, seed, run folder, status,
error, times, attempts, worker), kept crash-safe at a constant cost per trial event.

Two files in the sweep folder hold it:

- ``index.json``, a snapshot: every entry, and ``seq``, the number of the last event it
  holds. Written atomically (``files.atomic_write``: a temporary file, then a rename) when a
  sweep starts, every two seconds or more while it runs (taking at most 0.5% of the time)
  and when it ends.
- ``index.log``, the events since that snapshot, a JSON line each:
  ``{"seq": 12, "trial": {...the trial's whole entry...}}``, appended with one ``write`` on a
  descriptor opened ``O_APPEND``. A trial's start and its end are an event each.

The index is the snapshot, then every line of the log newer than it (a whole entry each,
replacing the trial's). Why a kill at any moment leaves a readable, consistent index:

- a process killed while appending leaves at most one unfinished last line, which readers
  leave out; every complete line is a complete entry, so no field of a trial is lost, only
  (at worst) the last event, and the trial's entry is then its previous one;
- the snapshot replaces index.json whole or not at all, and it is written before the log is
  emptied: lines it already holds (``seq`` not newer) are skipped, so a kill between the two
  loses nothing and counts nothing twice;
- the next start (under the sweep's lock) rewrites both: a fresh snapshot, an empty log, and
  the temporary files of killed writers removed;
- the trials' own run folders (their summary.json) say how each trial ended, and the runner
  reads them at every start, so even a lost last event is recovered.

The log is flushed to disk (``fdatasync``) every five seconds at most: a power cut may lose
the events of the last seconds, which the trial folders then supply. An index.json written by an
earlier nnlab (a whole file rewritten at every event, no ``seq``, no log) is read as a
snapshot, and rewritten in this form at the next start.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from pathlib import Path

from nnlab.errors import RunError
from nnlab.files import atomic_write, jsonable
from nnlab.runs import now

INDEX_FORMAT = "nnlab-sweep-index/2"
SNAPSHOT = "index.json"
LOG = "index.log"
SNAPSHOT_EVERY = 2.0  # seconds between snapshots while a sweep runs, at the least
SNAPSHOT_SHARE = 0.005  # and at most this share of the time spent writing them
SYNC_EVERY = 5.0  # seconds between flushes of the log to disk (fdatasync)


def trial_folder(run: object) -> bool:
    """Whether an entry's run folder is a folder of trials/ (the index is a file anyone may
    edit: a path like ``../../x`` must never be removed or written)."""
    return isinstance(run, str) and bool(re.fullmatch(r"trials/[\w+=-][\w.+=-]*", run, re.A))


def read_index(folder: Path) -> tuple[dict[str, dict], list[str]]:
    """The entries of a sweep folder's index, hash -> entry, and warnings about what was
    damaged or left out. A missing index is empty; a damaged snapshot is reported and the
    log read alone (the runner rebuilds what is missing from the trial folders)."""
    for _ in range(5):
        entries, seq, warnings = _read_snapshot(folder / SNAPSHOT)
        lines, first = _read_log(folder / LOG, seq, warnings)
        if first is None or first <= seq + 1:
            break
        # a snapshot was written (and the log emptied) between the two reads: read again
    for entry in lines:
        entries[entry["hash"]] = entry
    return _checked(entries, folder, warnings), warnings


def _read_snapshot(path: Path) -> tuple[dict[str, dict], int, list[str]]:
    warnings: list[str] = []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        trials = data["trials"]
        seq = data.get("seq", 0)
        if not isinstance(trials, list) or not isinstance(seq, int):
            raise ValueError("no list of trials")
    except FileNotFoundError:
        return {}, 0, warnings
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as e:
        warnings.append(f"{path}: damaged ({e}); rebuilt from the trial folders")
        return {}, 0, warnings
    entries = {}
    for e in trials:
        if isinstance(e, dict) and isinstance(e.get("hash"), str):
            entries[e["hash"]] = e
    return entries, seq, warnings


def _read_log(path: Path, seq: int, warnings: list[str]) -> tuple[list[dict], int | None]:
    """The entries of the log's complete lines newer than ``seq``, and the first line's seq."""
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return [], None
    except OSError as e:
        warnings.append(f"{path}: cannot be read ({e.strerror or e}); left out")
        return [], None
    lines = text.split("\n")[:-1]  # the last piece is empty or an unfinished line: left out
    out, first, bad = [], None, 0
    for line in lines:
        try:
            event = json.loads(line)
            n, entry = event["seq"], event["trial"]
            if not isinstance(n, int) or not isinstance(entry.get("hash"), str):
                raise ValueError
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            bad += 1
            continue
        first = n if first is None else first
        if n > seq:
            out.append(entry)
    if bad:
        warnings.append(f"{path}: {bad} damaged lines left out")
    return out, first


def _checked(entries: dict[str, dict], folder: Path, warnings: list[str]) -> dict[str, dict]:
    kept = {h: e for h, e in entries.items() if trial_folder(e.get("run"))}
    if len(kept) < len(entries):
        warnings.append(
            f"{folder / SNAPSHOT}: {len(entries) - len(kept)} entries name a folder outside "
            "trials/ (or no hash); ignored"
        )
    return kept


class IndexWriter:
    """Writes a sweep's index while the sweep runs (under its lock): ``open`` with every
    entry, ``record`` an entry at each trial event, ``close`` at the end. ``seconds`` is the
    time spent writing."""

    def __init__(self, folder: Path, name: str):
        self.folder, self.name = folder, name
        self.entries: dict[str, dict] = {}
        self.seq = 0
        self.seconds = 0.0
        self._fd: int | None = None
        self._snapshot_at = self._synced_at = 0.0
        self._snapshot_cost = 0.0

    def open(self, entries: dict[str, dict]) -> None:
        """A snapshot of ``entries`` (the index as planned) and a fresh, empty log."""
        self.entries = entries
        self.snapshot()

    def record(self, entry: dict) -> None:
        """A trial's entry changed (it started, or ended): one line on the log."""
        t0 = time.perf_counter()
        self.seq += 1
        line = json_line({"seq": self.seq, "trial": entry})
        _write_all(self._fd, (line + "\n").encode(), self.folder / LOG)
        now_ = time.monotonic()
        if now_ - self._synced_at >= SYNC_EVERY:
            os.fdatasync(self._fd)
            self._synced_at = now_
        self.seconds += time.perf_counter() - t0
        interval = max(SNAPSHOT_EVERY, self._snapshot_cost / SNAPSHOT_SHARE)
        if now_ - self._snapshot_at >= interval:
            self.snapshot()

    def snapshot(self) -> None:
        """index.json with every entry, then the log emptied (in that order: see above)."""
        t0 = time.perf_counter()
        head = {"format": INDEX_FORMAT, "name": self.name, "updated": now(), "seq": self.seq}
        trials = sorted(self.entries.values(), key=lambda e: e["number"])
        atomic_write(self.folder / SNAPSHOT, snapshot_text({**head, "log": LOG}, trials))
        if self._fd is None:
            self._fd = _new_log(self.folder / LOG)
        else:
            os.ftruncate(self._fd, 0)
        self._snapshot_cost = time.perf_counter() - t0
        self.seconds += self._snapshot_cost
        self._snapshot_at = self._synced_at = time.monotonic()

    def close(self) -> None:
        """The final snapshot; the log is left empty."""
        if self._fd is None:
            return
        try:
            self.snapshot()
        finally:
            os.close(self._fd)
            self._fd = None


def snapshot_text(head: dict, trials: list[dict]) -> str:
    """index.json: the ``head`` keys, then ``trials``, an entry per line (greppable, and
    written by the C encoder: an indented dump of 10,000 entries takes ten times longer)."""
    lines = [f"  {json_line(k)}: {json_line(v)}," for k, v in head.items()]
    body = ",\n".join(f"    {json_line(e)}" for e in trials)
    return "{\n" + "\n".join(lines) + '\n  "trials": [\n' + body + "\n  ]\n}\n"


def json_line(obj: object) -> str:
    """One line of JSON (which YAML reads too); values JSON cannot hold as they are pass
    through ``jsonable``."""
    try:
        return json.dumps(obj, allow_nan=False)
    except (TypeError, ValueError):
        return json.dumps(jsonable(obj), allow_nan=False)


def _new_log(path: Path) -> int:
    """An empty log, created afresh (whatever held the name before is removed, a symbolic
    link included: nothing outside the sweep folder is ever written through it)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(path, flags, 0o644)
    except OSError as e:
        raise RunError(f"{path}: cannot create the sweep's index log ({e.strerror or e})") from None


def _write_all(fd: int, data: bytes, path: Path) -> None:
    while data:
        try:
            n = os.write(fd, data)
        except OSError as e:
            raise RunError(
                f"{path}: cannot write the sweep's index ({e.strerror or e}); run the same "
                "command again once that is fixed"
            ) from None
        data = data[n:]
