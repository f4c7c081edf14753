"""``nnlab report``: one self-contained HTML file (it works offline) that shows runs as the
tracking tools do: the compare table, sortable and filterable (per run, and per group of seeds
with intervals and verdicts); learning curves per group with seed bands, for any metric; for
sweeps, parallel coordinates of the axes and the objective, the objective against each axis and
the importance of each axis; each run's config and summary a click away.

``report_data`` computes what is shown (``nnlab.report.data``), ``page`` writes the HTML with
plotly.js inlined (``nnlab.report.page``; the ``report`` extra).
"""

from __future__ import annotations

from nnlab.report.data import report_data
from nnlab.report.page import build_page, write_report

__all__ = ["build_page", "report_data", "write_report"]
