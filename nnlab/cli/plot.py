"""nnlab plot: learning curves, in the terminal or as an image."""

from __future__ import annotations

import click

from nnlab.cli.options import runs_arg, warn, where


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
@where
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

    loaded = filter_runs(load_runs(runs, warn), where)
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
