"""nnlab export-runs: runs for MLflow or TensorBoard, the tools people already use."""

from __future__ import annotations

import click

from nnlab.cli.options import runs_arg, warn


@click.command("export-runs")
@runs_arg
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

    done = run_export(runs, target, out, warn, experiment=experiment)
    skipped = f", {done.skipped} already there" if done.skipped else ""
    click.echo(f"{done.out}: {done.written} runs written for {target}{skipped}")
