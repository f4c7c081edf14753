"""Shared fixtures: isolated run folders, the command line in this process (``invoke_nnlab``)
and as a real process (``run_nnlab``, for what needs one: signals, kills, the entry point)."""

from __future__ import annotations

import builtins
import contextlib
import importlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
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


def invoke_nnlab(
    *args: object, cwd: Path | None = None, **env: object
) -> subprocess.CompletedProcess[str]:
    """Run ``nnlab ARGS`` in this process with click's CliRunner, as ``run_nnlab`` runs it in a
    child: in ``cwd`` (default: the project root), with ``env`` added to the environment and
    NNLAB_DEBUG removed, warnings shown on stderr as a fresh Python shows them (PYTHONWARNINGS
    honoured), an exception that escapes the command printed as a traceback with exit status 1.
    What a command may change in the process is put back afterwards: the working folder, the
    environment, sys.argv, the SIGINT/SIGTERM handlers, the BLAS thread limits and NumPy's
    error state. Returns a CompletedProcess, as run_nnlab does."""
    from click.testing import CliRunner

    from nnlab.cli import cli

    if "PYTHONPATH" in env:
        raise ValueError("PYTHONPATH does nothing in this process: patch sys.modules instead")
    if "timeout" in env:
        raise TypeError("no timeout in this process: use run_nnlab for what may hang")
    argv = [str(a) for a in args]
    with _process_state(cwd or ROOT, {k: str(v) for k, v in env.items()}, argv):
        result = CliRunner().invoke(cli, argv, prog_name="nnlab")
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(*result.exc_info))
    return subprocess.CompletedProcess(["nnlab", *argv], result.exit_code, result.stdout, stderr)


@contextlib.contextmanager
def _process_state(cwd: Path, env: dict[str, str], argv: list[str]) -> Iterator[None]:
    """Run the body in ``cwd`` with ``env``, then restore what a command may have changed."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    saved_env, saved_argv = dict(os.environ), sys.argv
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    numpy_errors = np.geterr()
    os.environ.pop("NNLAB_DEBUG", None)
    os.environ.update(env)
    # a child's output is a pipe, whose terminal size is the fallback 80 x 24 unless set
    os.environ.setdefault("COLUMNS", "80")
    os.environ.setdefault("LINES", "24")
    sys.argv = ["nnlab", *argv]
    try:
        with contextlib.chdir(cwd), threadpool_limits(limits=None), warnings.catch_warnings():
            _python_warning_filters(os.environ.get("PYTHONWARNINGS", ""))
            warnings.showwarning = _warning_on_stderr
            yield
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        sys.argv = saved_argv
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        np.seterr(**numpy_errors)


def _python_warning_filters(options: str) -> None:
    """The warning filters of a fresh Python started with PYTHONWARNINGS=``options`` (pytest
    shows and records every warning; a real process shows each once and no DeprecationWarning).
    """
    warnings.resetwarnings()
    warnings.simplefilter("default")
    for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
        warnings.filterwarnings("ignore", category=category)
    actions = ("default", "always", "ignore", "module", "once", "error")
    for option in filter(None, (o.strip() for o in options.split(","))):
        action, message, category, module, lineno = ([*option.split(":"), "", "", "", ""])[:5]
        full = next(a for a in actions if a.startswith(action.strip() or "default"))
        kind, _, name = category.strip().rpartition(".")
        where = importlib.import_module(kind) if kind else builtins
        warnings.filterwarnings(
            full,
            message=re.escape(message.strip()),
            category=getattr(where, name) if name else Warning,
            module=re.escape(module.strip()) + r"\Z" if module.strip() else "",
            lineno=int(lineno or 0),
        )


def _warning_on_stderr(message, category, filename, lineno, file=None, line=None) -> None:
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


_PEAK = (
    "import re, sys\n"
    "from pathlib import Path\n"
    "import nnlab.lifecycle, nnlab.sweeps.runner\n"
    "from nnlab.cli import cli\n"
    "if sys.argv[1:]:\n"
    "    try:\n"
    "        cli.main(sys.argv[1:], prog_name='nnlab')\n"
    "    except SystemExit as e:\n"
    "        assert e.code == 0, e.code\n"
    "print(re.search(r'VmPeak:\\s+(\\d+) kB', Path('/proc/self/status').read_text())[1])\n"
)


def peak_kb(*args: str, cwd: Path | None = None) -> int:
    """The peak address space (VmPeak, kB) of a child that imports what ``nnlab train`` and
    ``nnlab sweep`` import and, with ``args``, runs ``nnlab ARGS`` (which must succeed)."""
    proc = subprocess.run(
        [sys.executable, "-c", _PEAK, *map(str, args)],
        cwd=cwd or ROOT,
        env=nnlab_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.splitlines()[-1])


def run_nnlab_capped(
    *args: str,
    extra_mb: int,
    baseline: tuple[str, ...] = (),
    cwd: Path | None = None,
    timeout: float = 300,
):
    """``run_nnlab`` in a process whose address space (RLIMIT_AS, Linux) is capped at the peak
    of a child that imports the same libraries and runs ``nnlab BASELINE`` (``peak_kb``), plus
    ``extra_mb``. (Not this process's size, which grows with what the tests before did.)"""
    import resource

    limit = peak_kb(*baseline, cwd=cwd) * 1024 + extra_mb * 2**20

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
    from nnlab.lifecycle import train

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


C_MAIN = r"""
#include <stdio.h>
#include "model.h"

int main(void)
{
    REAL x[N_INPUTS], out[N_OUTPUTS];
#ifdef N_CLASSES
    for (int k = 0; k < N_CLASSES; k++)
        printf("%s%c", CLASS_NAMES[k], k + 1 < N_CLASSES ? ',' : '\n');
#endif
    for (;;) {
        for (int i = 0; i < N_INPUTS; i++)
            if (scanf(SCAN, &x[i]) != 1) return 0;
        predict(x, out);
        for (int j = 0; j < N_OUTPUTS; j++)
            printf(PRINT "%c", out[j], j + 1 < N_OUTPUTS ? ' ' : '\n');
    }
}
"""


def run_c_header(folder: Path, X: np.ndarray, double: bool) -> list[str]:
    """The lines a program printed that includes ``folder/model.h`` (an exported model),
    built with strict warnings as errors and fed the rows of ``X`` (float or double): the
    class names first for a classifier, then a line of outputs per row."""
    head = ('#define REAL double\n#define SCAN "%lf"\n#define PRINT "%.17g"\n' if double
            else '#define REAL float\n#define SCAN "%f"\n#define PRINT "%.9g"\n')  # fmt: skip
    (folder / "main.c").write_text(head + C_MAIN)
    flags = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Wpedantic", "-Werror"]
    build = subprocess.run(
        [c_compiler(), *flags, "main.c", "-o", "model", "-lm"],
        cwd=folder,
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr
    text = "\n".join(" ".join(repr(float(v)) for v in row) for row in X)
    proc = subprocess.run(
        [str(folder / "model")], input=text, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()
