"""nnlab report: runs in one HTML file that works offline."""

from __future__ import annotations

import click

from nnlab.cli.options import runs_arg, warn


@click.command("report")
@runs_arg
@click.option(
    "-o",
    "--output",
    default="report.html",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="The HTML file to write.",
)
@click.option(
    "--objective",
    metavar="COL",
    help="What the sweep plots and the verdicts rank by: a metric column of nnlab compare "
    "(val_accuracy, test_accuracy, val_loss.best, ...). Default: the last val_accuracy, else "
    "accuracy, val_loss or loss.",
)
@click.option("--title", help="The page's title (default: the sweep's name, or the run count).")
def report(runs, output, objective, title):
    """One HTML file of RUNS that works offline: open it in a browser.

    \b
    Examples:
      nnlab report runs/sweeps/init_lr -o init_lr.html
      nnlab report runs/* --objective test_accuracy

    It holds the compare table (per run, and per group of seeds with 95% intervals and the
    verdicts against the best group), sortable and filterable; the learning curves of every
    metric, a line per config with its seed band; for sweeps, parallel coordinates of the axes
    and the objective, the objective against each axis and each axis's importance; and each
    run's config, baselines and summary a click away. plotly.js is inside the file (needs
    pip install 'nnlab[report]'): nothing is fetched when it opens.
    """
    from nnlab.report import write_report

    done = write_report(runs, output, warn, objective=objective, title=title or "")
    click.echo(
        f"{done.path}: {done.runs} runs, {done.bytes / 1e6:.1f} MB, made in {done.seconds:.1f} s"
    )
