"""The report as one HTML file that works offline: the data (JSON) and plotly.js are inside it,
gzip-compressed and base64-encoded (a third of their size), unpacked by the browser's
``DecompressionStream``; the page's script (``report.js``) draws the table and the plots."""

from __future__ import annotations

import base64
import gzip
import html
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

from nnlab import __version__
from nnlab.errors import NnlabError, RunError


def plotly_js() -> str:
    """plotly.js as the ``plotly`` package ships it (the ``report`` extra), or an error saying
    how to install it."""
    try:
        from plotly.offline import get_plotlyjs
    except ImportError:
        raise NnlabError("nnlab report needs plotly: pip install 'nnlab[report]'") from None
    return get_plotlyjs()


def packed(text: str) -> str:
    """``text`` gzip-compressed (no timestamp: the same text gives the same bytes) and
    base64-encoded, in lines of 76 characters."""
    return base64.encodebytes(gzip.compress(text.encode(), compresslevel=6, mtime=0)).decode()


def build_page(data: dict) -> str:
    """The HTML of a report from ``nnlab.report.data.report_data``."""
    files = resources.files("nnlab.report")
    page = Template(files.joinpath("page.html").read_text(encoding="utf-8"))
    return page.substitute(
        title=html.escape(data["title"]),
        version=__version__,
        css=files.joinpath("report.css").read_text(encoding="utf-8"),
        js=files.joinpath("report.js").read_text(encoding="utf-8"),
        data=packed(json.dumps(data, separators=(",", ":"), allow_nan=False)),
        plotly=packed(plotly_js()),
    )


@dataclass
class Written:
    """A report written: where, how many runs, its size and the seconds it took."""

    path: Path
    runs: int
    bytes: int
    seconds: float


def write_report(
    paths: Iterable[str | Path],
    output: str | Path = "report.html",
    warn: Callable[[str], None] = print,
    objective: str | None = None,
    title: str = "",
) -> Written:
    """Read the runs among ``paths`` (folders of runs stand for their runs) and write their
    report to ``output``, atomically."""
    from nnlab.compare.table import load_runs
    from nnlab.files import atomic_write
    from nnlab.report.data import report_data

    t0 = time.perf_counter()
    plotly_js()  # the missing extra is said before the runs are read
    runs = load_runs(paths, warn)
    if not runs:
        raise RunError("no runs to report")
    text = build_page(report_data(runs, objective=objective, title=title))
    out = Path(output)
    atomic_write(out, text.encode())
    return Written(out, len(runs), out.stat().st_size, time.perf_counter() - t0)
