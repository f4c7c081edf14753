"""nnlab train: train a config, or resume a run, into a run folder."""

from __future__ import annotations

import sys

import click

from nnlab.cli.options import overrides, quiet, runs_dir, seed


@click.command("train")
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@overrides
@runs_dir
@click.option("--name", help="Name of the run (default: the config's name or file name).")
@seed
@click.option(
    "--resume",
    "resume_run",
    type=click.Path(file_okay=False),
    help="Continue a killed or interrupted run folder from its last checkpoint.",
)
@quiet
def train(config, overrides, runs_dir, name, seed, resume_run, quiet):
    """Train the network that CONFIG describes and record it in a run folder.

    \b
    Examples:
      nnlab train configs/xor.yaml
      nnlab train configs/digits.yaml --set optimizer.lr=0.01 --set training.seed=3
      nnlab train configs/threshold.yaml --set model.layers.0.activation=sigmoid
      nnlab train --resume runs/mnist_mlp-20261123-101500

    The run folder (under --runs-dir) gets config.yaml (the resolved config), metrics.csv
    (a row per epoch), summary.json and model.npz, and while training checkpoint.npz. The
    folder's path is printed last. Ctrl-C or SIGTERM stops at a safe point (status
    interrupted, exit 130/143); --resume continues such a run, or one that was killed, and
    its metrics are those of an uninterrupted run.
    """
    from nnlab.config import load_config
    from nnlab.lifecycle import exit_code, resume
    from nnlab.lifecycle import train as run
    from nnlab.result import format_result

    if resume_run is not None:
        if config is not None or overrides or seed is not None or name:
            raise click.UsageError(
                "--resume continues a run as it was: give no CONFIG or --set/--seed/--name with it"
            )
        result = resume(resume_run, quiet=quiet)
        click.echo(format_result(result.summary, result.run_dir))
        click.echo(str(result.run_dir))
        sys.exit(exit_code(result))
    if config is None:
        raise click.UsageError("give a CONFIG file (or --resume RUN)")
    extra = [f"training.seed={seed}"] if seed is not None else []
    cfg = load_config(config, [*overrides, *extra])
    if name:
        cfg["name"] = name
    result = run(cfg, runs_dir=runs_dir, quiet=quiet)
    click.echo(format_result(result.summary, result.run_dir))
    click.echo(str(result.run_dir))
    sys.exit(exit_code(result))
