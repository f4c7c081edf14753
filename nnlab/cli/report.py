"""nnlab report, nnlab export-runs: runs in a browser, and in the tools people already use."""

from __future__ import annotations

import click


def _warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


@click.command("report")
@click.argument("runs", nargs=-1, required=True, type=click.Path())
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

    done = write_report(runs, output, _warn, objective=objective, title=title or "")
    click.echo(
        f"{done.path}: {done.runs} runs, {done.bytes / 1e6:.1f} MB, made in {done.seconds:.1f} s"
    )


@click.command("export-runs")
@click.argument("runs", nargs=-1, required=True, type=click.Path())
@click.argument("out", type=click.Path(file_okay=False))
@click.option(
    "--to",
    "target",
    required=True,
    type=click.Choice(["mlflow", "tensorboard"]),
    help="mlflow: a tracking store in OUT (OUT/mlflow.db and OUT/artifacts; pip install "
    "'nnlab[mlflow]'); tensorboard: event files, a folder per run (pip install "
    "'nnlab[tensorboard]').",
)
@click.option(
    "--experiment",
    help="mlflow: the experiment's name (default: the name of the folder given, else nnlab).",
)
def export_runs(runs, out, target, experiment):
    """Export RUNS (run folders, or folders of runs) to the folder OUT for MLflow or TensorBoard.

    \b
    Examples:
      nnlab export-runs runs/sweeps/init_lr --to mlflow mlruns
      mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db    # the full mlflow package
      nnlab export-runs runs/* --to tensorboard tb && tensorboard --logdir tb

    Each run goes with its config keys as parameters, every metric per epoch, the final
    train/val/test metrics, its status, and its files (config.yaml, summary.json, metrics.csv,
    model.npz as MLflow artifacts; model.npz beside the event files). Runs already in OUT
    are skipped.
    """
    from nnlab.tracking import export_runs as run_export

    done = run_export(runs, target, out, _warn, experiment=experiment)
    skipped = f", {done.skipped} already there" if done.skipped else ""
    click.echo(f"{done.out}: {done.written} runs written for {target}{skipped}")


COMMANDS = [report, export_runs]
