"""nnlab diff: two runs side by side."""

from __future__ import annotations

import click

from nnlab.cli.options import warn


@click.command("diff")
@click.argument("run_a", type=click.Path())
@click.argument("run_b", type=click.Path())
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "markdown", "csv", "json"]),
    default="table",
    show_default=True,
)
def diff(run_a, run_b, fmt):
    """The config keys that differ between RUN_A and RUN_B, and their metrics with the change.

    \b
    Example:
      nnlab diff runs/digits-20260101-120000 runs/digits-20260101-120500
    """
    from nnlab.compare import diff as diff_runs
    from nnlab.compare import load_runs, render_diff
    from nnlab.errors import RunError
    from nnlab.runs import find_runs

    for path in (run_a, run_b):
        if len(find_runs([path], warn)) != 1:
            raise RunError(f"{path}: not a run folder")
    pair = load_runs([run_a, run_b], warn, curves=False)
    if len(pair) != 2:
        raise RunError("diff needs two readable runs")
    click.echo(render_diff(diff_runs(*pair), fmt))
