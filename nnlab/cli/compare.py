"""nnlab compare: one table of runs, what differs between them and how each did."""

from __future__ import annotations

import click

from nnlab.cli.options import runs_arg, terminal_width, warn, where

FORMATS = ["table", "markdown", "csv", "json"]


@click.command("compare")
@runs_arg
@click.option(
    "--group-seeds",
    is_flag=True,
    help="One row per config over its seeds: the mean ± the half-width of its 95% t-interval and "
    "the number of runs with a finite value (n); csv/json: M.mean, M.std, M.n, M.low, M.high.",
)
@click.option(
    "--metric",
    "-m",
    "metrics",
    multiple=True,
    metavar="NAME",
    help="Metrics to show (last, best, best epoch), repeatable or comma-separated; 'all' for "
    "every metric. Default: the validation metrics, else the training ones.",
)
@click.option(
    "--columns",
    "-c",
    multiple=True,
    metavar="COL,...",
    help="Show exactly these columns after the run: config keys (any, not only those that "
    "differ), metrics (val_accuracy = last, val_accuracy.best, val_accuracy.best_epoch), "
    "test_accuracy, status, epochs, seconds.",
)
@where
@click.option(
    "--against",
    "-a",
    multiple=True,
    metavar="best|N|EXPR",
    help="With --group-seeds: compare every row with the best row (best), with row N as "
    "printed (the # column), or with the one row that satisfies KEY OP VALUE as shown (the "
    "--where language, a metric by its mean; repeat to AND): the difference of the means with "
    "its 95% interval, the p-value (paired "
    "t-test by seed where both rows ran the same seeds, else Welch's) and a verdict; below "
    "the table, the seeds needed to tell the two best rows apart.",
)
@click.option(
    "--objective",
    metavar="COL",
    help="The metric column the verdicts are on (val_accuracy, test_accuracy, val_loss.best; "
    "without --against: against the best). Default: the first accuracy shown (its last "
    "value), else the first metric shown.",
)
@click.option("--sort", "-S", metavar="COL", help="Sort by a column: metrics best first.")
@click.option("--reverse", is_flag=True, help="Reverse the order.")
@click.option("--top", type=click.IntRange(min=1), help="Only the first N rows.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option(
    "--width",
    type=click.IntRange(min=0),
    help="The table format fits this many columns, leaving out what does not fit and saying "
    "what (0: every column). Default: the terminal's width, none when the output is not a "
    "terminal.",
)
def compare(
    runs, group_seeds, metrics, columns, where, against, objective, sort, reverse, top, fmt, width
):
    """One table of RUNS: the config keys that differ between them, and how each did.

    \b
    Examples:
      nnlab compare runs/*
      nnlab compare runs/sweeps/init_lr --group-seeds      # a sweep folder = its trials
      nnlab compare runs/sweeps/init_lr --group-seeds --against best
      nnlab compare runs/sweeps/init_lr --group-seeds --against initializer==he_normal \\
          --against lr==0.01 --objective test_accuracy
      nnlab compare runs/* --sort val_accuracy --top 10 --where 'optimizer.lr<0.1' --format markdown
      nnlab compare runs/* -m val_loss -c optimizer.lr,val_loss.best,status

    For each metric: its last value and its best value with the best epoch; then the test
    metrics, status (a run whose process is gone shows killed), epochs and training seconds.
    Folders that are not runs and runs with damaged files are reported and skipped. The table
    and markdown formats name config keys by their shortest unique key path. On a terminal the
    table fits its width: the run, the differing keys and the headline metric first; what is
    left out is named below it (--width 0 shows everything). With --group-seeds a row is a
    config over its seeds: mean ± the half-width of its 95% t-interval (n); --against adds
    the verdicts (csv/json: M.diff, M.diff_low, M.diff_high, M.p, M.p_exact, M.test,
    M.verdict, M.seeds_needed; they need scipy: pip install 'nnlab[stats]').
    """
    from nnlab.compare import build_table, load_runs, render
    from nnlab.errors import RunError

    loaded = load_runs(runs, warn, curves=False)
    if not loaded:
        raise RunError("no runs to compare")
    table = build_table(
        loaded,
        metrics=metrics,
        columns=columns,
        where=where,
        sort=sort,
        reverse=reverse,
        top=top,
        group_seeds=group_seeds,
        against=against,
        objective=objective,
    )
    click.echo(render(table, fmt, width=terminal_width() if width is None else width))
