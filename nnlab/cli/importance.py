"""nnlab importance: which axis of a sweep matters, and how much."""

from __future__ import annotations

import click

from nnlab.cli.options import runs_arg, warn, where

FORMATS = ["table", "markdown", "csv", "json"]


@click.command("importance")
@runs_arg
@click.option(
    "--metric",
    "-m",
    "--objective",
    "metric",
    metavar="COL",
    help="The metric column to explain: a metric's last value (val_accuracy), its best "
    "(val_loss.best) or a test metric (test_accuracy). Default: the validation metric "
    "compare ranks by (val_accuracy, else the first validation metric).",
)
@where
@click.option(
    "--method",
    type=click.Choice(["auto", "anova", "fanova"]),
    default="auto",
    show_default=True,
    help="anova: the exact functional ANOVA of a complete grid; fanova: fANOVA through "
    "Optuna (any set of configs; needs pip install 'nnlab[search]'); auto: anova on a "
    "complete grid, else fanova.",
)
@click.option(
    "--boot",
    type=click.IntRange(min=0),
    metavar="N",
    help="Bootstrap draws over seeds for the intervals (default 1000 for anova, 20 for "
    "fanova, which refits its forest for each; 0: none).",
)
@click.option(
    "--seed",
    "rng_seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Seeds the bootstrap's draws and fANOVA's forest.",
)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
def importance(runs, metric, where, method, boot, rng_seed, fmt):
    """Each axis's share of the variance of a metric over the configs of RUNS, ranked.

    \b
    Examples:
      nnlab importance runs/sweeps/init_lr
      nnlab importance runs/sweeps/init_lr --metric test_accuracy --where 'initializer!=zeros'
      nnlab importance runs/* --method fanova --format json

    The axes are those of the sweep (sweep.yaml) when RUNS are one sweep's trials, else the
    config keys that differ between the runs (the seed left out). The metric is averaged over
    each config's seeds; a share is the part of the variance of these means that an axis (or a
    pair of axes: their interaction) explains. The interval says how stable the share is over
    seeds: a bootstrap that draws the seeds again. fanova needs pip install 'nnlab[search]'
    (optuna, scikit-learn).
    """
    from nnlab.compare import filter_runs, load_runs
    from nnlab.compare.axes import render_importance, runs_importance
    from nnlab.errors import RunError

    loaded = filter_runs(load_runs(runs, warn), where)
    if not loaded:
        raise RunError("no runs to rank" + (" (--where left none)" if where else ""))
    imp, axes = runs_importance(loaded, metric, method=method, n_boot=boot, rng_seed=rng_seed)
    click.echo(render_importance(imp, axes, fmt))
