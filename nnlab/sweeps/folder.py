"""A sweep folder's files: the lock, the trial folders, the spec, temporary files.

``RUNS/sweeps/NAME/`` holds ``.lock`` (one process at a time runs a sweep), ``sweep.yaml``,
the index (``nnlab.sweeps.index``), ``trials/`` (a run folder per trial) and ``logs/``. Nothing
here follows a symbolic link out of the sweep folder: the lock is opened ``O_NOFOLLOW`` and must
be a plain file of its own, and a trials or logs folder, or a trial folder, that is a link is
refused with a message naming it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from nnlab.config import dump_yaml
from nnlab.errors import RunError
from nnlab.files import atomic_write
from nnlab.runs import DONE, make_dir, read_summary, safe_name
from nnlab.sweeps.index import json_line
from nnlab.sweeps.spec import Sweep

#: a temporary file of ``files.atomic_write``: ``.NAME.tmp-PID``
TEMPORARY = re.compile(r"\.(.+)\.tmp-(\d+)")
STALE_SECONDS = 600.0  # a temporary file this old is stale even if its writer's pid lives


def sweep_dir_for(runs_dir: str | Path, name: str) -> Path:
    return Path(runs_dir) / "sweeps" / safe_name(name)


class SweepFolder:
    """The files of a sweep folder."""

    def __init__(self, path: Path):
        self.path = path
        self.trials_dir = path / "trials"
        self.logs_dir = path / "logs"
        self.warnings: list[str] = []

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the sweep's lock: one process at a time runs a sweep folder. The lock file is
        opened without following a symbolic link, and must be a plain file of its own."""
        make_dir(self.path, "the sweep folder")
        path = self.path / ".lock"
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        try:
            fd = os.open(path, flags, 0o644)
        except OSError as e:
            why = "it is a symbolic link" if e.errno == errno.ELOOP else (e.strerror or str(e))
            raise RunError(f"{path}: cannot open the sweep's lock ({why}); remove it") from None
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            os.close(fd)
            what = "not a plain file" if not stat.S_ISREG(info.st_mode) else "a hard link"
            raise RunError(f"{path}: the sweep's lock is {what}; remove it")
        with os.fdopen(fd, "r+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = f.read(200).strip() or "another process"
                raise RunError(
                    f"{self.path}: this sweep is running already ({holder}); wait for it or "
                    "stop it first"
                ) from None
            f.truncate(0)
            f.write(f"pid {os.getpid()}")
            f.flush()
            try:
                yield
            finally:
                f.truncate(0)
                fcntl.flock(f, fcntl.LOCK_UN)

    def prepare(self) -> None:
        """Under the lock, before anything runs: the trials and logs folders (real folders,
        not links out of the sweep folder) and no temporary file of a killed writer left."""
        for d, what in ((self.trials_dir, "trials"), (self.logs_dir, "logs")):
            if d.is_symlink():
                raise RunError(f"{d}: the sweep's {what} folder is a symbolic link; remove it")
            make_dir(d, f"the sweep's {what} folder")
        remove_stale(self.path, every=True)

    def scan(self, clean: bool = False) -> dict[str, tuple[str, dict]]:
        """Trial run folders with a readable summary: hash -> (folder relative path, summary).
        With ``clean``, stale temporary files in them are removed."""
        found: dict[str, tuple[str, dict]] = {}
        if not self.trials_dir.is_dir():
            return found
        for run in sorted(self.trials_dir.iterdir()):
            if run.is_symlink():
                raise RunError(
                    f"{run}: a trial folder that is a symbolic link; nnlab writes trials only "
                    "in real folders of the sweep: remove the link"
                )
            if clean and run.is_dir():
                remove_stale(run)
            try:
                summary = read_summary(run)
            except RunError:
                continue
            h = summary.get("config_hash")
            if not isinstance(h, str):
                continue
            rel = str(run.relative_to(self.path))
            old = found.get(h)
            if old is None or (summary.get("status") in DONE and old[1].get("status") not in DONE):
                found[h] = (rel, summary)
        return found

    def write_spec(self, sweep: Sweep) -> None:
        """sweep.yaml: the spec as given, the base config, the axes, the seeds and the trials
        (a line each, in JSON's flow style, which YAML reads: 10,000 trials are written in
        a few milliseconds instead of seconds)."""
        data = {
            "name": sweep.name,
            "description": sweep.description,
            "command": " ".join(["nnlab", *sys.argv[1:]]) if _cli() else None,
            "spec": sweep.spec,
            "base": sweep.base,
            "axes": {a.key: a.values for a in sweep.axes},
        }
        trials = [
            "- " + json_line({"number": t.number, "hash": t.hash, "seed": t.seed,
                              "overrides": t.overrides}) + "\n"
            for t in sweep.trials
        ]  # fmt: skip
        text = dump_yaml(data) + f"seeds: {json_line(sweep.seeds)}\n"
        text += "trials:\n" + "".join(trials) if trials else "trials: []\n"
        atomic_write(self.path / "sweep.yaml", text)


def remove_stale(folder: Path, every: bool = False) -> int:
    """Remove the temporary files (``.NAME.tmp-PID``) that killed writers left in ``folder``:
    those whose process is gone or that are older than ``STALE_SECONDS`` (``every``: all of
    them, for a folder only this process writes). Returns how many."""
    removed = 0
    try:
        with os.scandir(folder) as entries:
            names = [d.name for d in entries if d.name.startswith(".")]
    except OSError:
        return 0
    for name in names:
        m = TEMPORARY.fullmatch(name)
        if m is None:
            continue
        path = folder / name
        if not every and _pid_alive(int(m.group(2))):
            with contextlib.suppress(OSError):
                if time.time() - path.lstat().st_mtime < STALE_SECONDS:
                    continue
        with contextlib.suppress(OSError):
            path.unlink()
            removed += 1
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def _cli() -> bool:
    return Path(sys.argv[0]).name in ("nnlab", "__main__.py")
