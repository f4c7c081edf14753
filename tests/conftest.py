"""Shared fixtures: isolated run folders and a way to run the real command line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"


def _mnist_dir() -> Path | None:
    """Where tests read the real MNIST files: ``$NNLAB_DATA_DIR``, else ``../shared/data/mnist``
    (the project's machines have it); None when neither holds the four .gz files."""
    from nnlab.data.mnist import FILES

    for folder in (os.environ.get("NNLAB_DATA_DIR"), ROOT.parent / "shared" / "data" / "mnist"):
        if folder and all((Path(folder) / f.gz).is_file() for f in FILES):
            return Path(folder)
    return None


MNIST_DIR = _mnist_dir()
NO_MNIST = (
    "no MNIST files in $NNLAB_DATA_DIR or ../shared/data/mnist (only the project's machines "
    "have ../shared): set NNLAB_DATA_DIR to a folder holding the four .gz files to run this"
)


def nnlab_env(**extra: str) -> dict[str, str]:
    """The environment for a subprocess that imports this checkout's nnlab."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("NNLAB_DEBUG", None)
    env.update(extra)
    return env


def run_nnlab(*args: str, cwd: Path | None = None, timeout: float = 300, **env: str):
    """Run ``python -m nnlab ARGS`` as a real process; returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", "nnlab", *map(str, args)],
        cwd=cwd or ROOT,
        env=nnlab_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_nnlab_capped(*args: str, extra_mb: int, cwd: Path | None = None, timeout: float = 300):
    """``run_nnlab`` in a process whose address space (RLIMIT_AS, Linux) is what this process
    has, which imports the same libraries, plus ``extra_mb``."""
    import re
    import resource

    size = int(re.search(r"VmSize:\s+(\d+) kB", Path("/proc/self/status").read_text())[1])
    limit = size * 1024 + extra_mb * 2**20

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return subprocess.run(
        [sys.executable, "-m", "nnlab", *map(str, args)],
        cwd=cwd or ROOT,
        env=nnlab_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=cap,
    )


def wait_for(condition, timeout: float = 60.0, what: str = "a condition"):
    """Poll ``condition()`` until it returns something true, and return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    d = tmp_path / "runs"
    d.mkdir()
    return d


@pytest.fixture
def write_config(tmp_path: Path):
    """Write YAML text to a config file and return its path."""

    def write(text: str, name: str = "exp.yaml") -> Path:
        p = tmp_path / name
        p.write_text(text)
        return p

    return write


def train_run(config: Path, runs_dir: Path, *overrides: str) -> Path:
    """Train a config file (with ``--set`` overrides) in this process; returns the run folder."""
    from nnlab.config import load_config
    from nnlab.train import train

    result = train(load_config(config, list(overrides)), runs_dir, handle_signals=False)
    assert result.summary["status"] == "completed", result.summary
    return result.run_dir


def run_without_nnlab(program: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run a Python file in an isolated interpreter in which ``import nnlab`` fails."""
    boot = (
        "import runpy, sys; sys.modules['nnlab'] = None; sys.argv = sys.argv[1:]; "
        "runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    return subprocess.run(
        [sys.executable, "-I", "-c", boot, str(program), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def c_compiler() -> str:
    """The machine's C compiler (the test is skipped without one)."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.skip("no C compiler (cc, gcc or clang) on this machine")
    return cc
