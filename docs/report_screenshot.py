"""Make docs/report_init_lr.png: the report of configs/sweeps/init_lr.yaml, as headless Chromium
shows it (the README links it).

    .venv/bin/python docs/report_screenshot.py [RUNS_DIR]

Runs the sweep into RUNS_DIR (default runs/docs; trials already done are kept), writes
RUNS_DIR/init_lr.html with nnlab report and screenshots it with Debian's chromium through the
tests' DevTools client (tests/chromium.py). Needs the report and test extras and chromium.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from chromium import Chromium, find_chromium  # noqa: E402

READY = "document.body.dataset.ready === 'true'"


def main(runs_dir: str = "runs/docs") -> int:
    nnlab = [sys.executable, "-m", "nnlab"]
    sweep = ["sweep", "configs/sweeps/init_lr.yaml", "--runs-dir", runs_dir, "-q"]
    subprocess.run([*nnlab, *sweep], cwd=ROOT, check=True)
    page = ROOT / runs_dir / "init_lr.html"
    report = ["report", f"{runs_dir}/sweeps/init_lr", "-o", str(page)]
    subprocess.run([*nnlab, *report], cwd=ROOT, check=True)
    binary = find_chromium()
    if binary is None:
        sys.exit("no chromium on this machine (Debian: apt-get install chromium)")
    out = ROOT / "docs" / "report_init_lr.png"
    with Chromium(binary, width=1280) as browser:
        browser.open(page, READY)
        browser.screenshot(out, READY, width=1280)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
