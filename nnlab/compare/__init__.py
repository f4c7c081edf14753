"""Comparing runs: what differs between them and how each did.

``table`` reads runs into one table (``load_runs``, ``build_table``), ``query`` is the
``--where`` language, ``render`` writes tables, ``diff`` sets two runs side by side and ``keys``
names what differs (also for the legends of plots).
"""

from __future__ import annotations

from nnlab.compare.diff import diff, render_diff
from nnlab.compare.keys import differing_keys, flatten, short_names
from nnlab.compare.render import FORMATS, render
from nnlab.compare.table import Run, Table, build_table, filter_runs, load_runs, record

__all__ = [
    "FORMATS",
    "Run",
    "Table",
    "build_table",
    "diff",
    "differing_keys",
    "filter_runs",
    "flatten",
    "load_runs",
    "record",
    "render",
    "render_diff",
    "short_names",
]
