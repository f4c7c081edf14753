"""nnlab compare, nnlab diff, nnlab plot."""

from __future__ import annotations

import click

FORMATS = ["table", "markdown", "csv", "json"]

runs_arg = click.argument("runs", nargs=-1, required=True, type=click.Path())
where_option = click.option(
    "--where",
    "-w",
    multiple=True,
    metavar="EXPR",
    help="Keep the runs where KEY OP VALUE holds (OP: == != < <= > >=); repeat to AND. "
    "KEY is any column or config key; a unique suffix is enough (lr for optimizer.lr).",
)


def _warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


@click.command("compare")
@runs_arg
@click.option(
    "--group-seeds",
    is_flag=True,
    help="One row per config over its seeds: mean ± sample standard deviation (ddof=1) and the "
    "number of runs with a finite value (n).",
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
@where_option
@click.option("--sort", "-S", metavar="COL", help="Sort by a column: metrics best first.")
@click.option("--reverse", is_flag=True, help="Reverse the order.")
@click.option("--top", type=click.IntRange(min=1), help="Only the first N rows.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
def compare(runs, group_seeds, metrics, columns, where, sort, reverse, top, fmt):
    """One table of RUNS: the config keys that differ between them, and how each did.

    \b
    Examples:
      nnlab compare runs/*
      nnlab compare runs/sweeps/init_lr --group-seeds      # a sweep folder = its trials
      nnlab compare runs/* --sort val_accuracy --top 10 --where 'optimizer.lr<0.1' --format markdown
      nnlab compare runs/* -m val_loss -c optimizer.lr,val_loss.best,status

    For each metric: its last value and its best value with the best epoch; then the test
    metrics, status (a run whose process is gone shows killed), epochs and training seconds.
    Folders that are not runs and runs with damaged files are reported and skipped. The table
    and markdown formats shorten config keys to their shortest unique suffix.
    """
    from nnlab.compare import build_table, load_runs, render
    from nnlab.errors import RunError

    loaded = load_runs(runs, _warn)
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
    )
    click.echo(render(table, fmt))


@click.command("diff")
@click.argument("run_a", type=click.Path())
@click.argument("run_b", type=click.Path())
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "markdown", "json"]),
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
        if len(find_runs([path], _warn)) != 1:
            raise RunError(f"{path}: not a run folder")
    pair = load_runs([run_a, run_b], _warn)
    if len(pair) != 2:
        raise RunError("diff needs two readable runs")
    click.echo(render_diff(diff_runs(*pair), fmt))


@click.command("plot")
@runs_arg
@click.option(
    "--metric",
    "-m",
    "metrics",
    multiple=True,
    metavar="NAME",
    help="The metric to plot (a metrics.csv column), repeatable: one panel each. "
    "Default: val_loss, else loss.",
)
@click.option(
    "--group-seeds", is_flag=True, help="A mean line per config over its seeds, with a band."
)
@click.option(
    "--band",
    type=click.Choice(["minmax", "std"]),
    default="minmax",
    show_default=True,
    help="The band around a group's mean: min to max, or ± one sample standard deviation.",
)
@where_option
@click.option("--logy", is_flag=True, help="A logarithmic y axis.")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False),
    help="Write an image (PNG, or SVG/PDF by the extension; needs matplotlib: "
    "pip install 'nnlab[plot]'). Without it, the plot is drawn in the terminal.",
)
def plot(runs, metrics, group_seeds, band, where, logy, output):
    """Learning curves of RUNS: a line per run, or per config a mean over its seeds.

    \b
    Examples:
      nnlab plot runs/* --metric val_loss                       # in the terminal
      nnlab plot runs/sweeps/init_lr --group-seeds -m val_accuracy -o curves.png
      nnlab plot runs/* -m loss -m val_loss --logy -o losses.png

    The legend names what differs between the lines (the config keys, by their short names).
    """
    import shutil

    from nnlab.compare import filter_runs, load_runs
    from nnlab.errors import RunError
    from nnlab.plot import curves, plot_image, text_plot

    loaded = filter_runs(load_runs(runs, _warn), where)
    if not loaded:
        raise RunError("no runs to plot")
    if not metrics:
        columns = {c for r in loaded for c in r.metrics.columns}
        metrics = ("val_loss",) if "val_loss" in columns else ("loss",)
    panels = {m: curves(loaded, m, group_seeds, band) for m in dict.fromkeys(metrics)}
    if output:
        plot_image(panels, output, logy=logy)
        click.echo(output)
        return
    columns = max(40, min(160, shutil.get_terminal_size((80, 24)).columns))
    click.echo("\n\n".join(text_plot(lines, m, columns, logy=logy) for m, lines in panels.items()))


COMMANDS = [compare, diff, plot]
