"""nnlab train."""

from __future__ import annotations

import sys

import click

from nnlab.cli.options import config_arg, overrides, quiet, runs_dir


@click.command("train")
@config_arg
@overrides
@runs_dir
@click.option("--name", help="Name of the run (default: the config's name or file name).")
@click.option("--seed", type=int, help="Shorthand for --set training.seed=N.")
@quiet
def train(config, overrides, runs_dir, name, seed, quiet):
    """Train the network that CONFIG describes and record it in a run folder.

    \b
    Examples:
      nnlab train configs/xor.yaml
      nnlab train configs/digits.yaml --set optimizer.lr=0.01 --set training.seed=3
      nnlab train configs/threshold.yaml --set model.layers.0.activation=sigmoid

    The run folder (under --runs-dir) gets config.yaml (the resolved config), metrics.csv
    (a row per epoch), summary.json and model.npz. The folder's path is printed last.
    """
    from nnlab.config import load_config
    from nnlab.report import format_result
    from nnlab.train import exit_code
    from nnlab.train import train as run

    extra = [f"training.seed={seed}"] if seed is not None else []
    cfg = load_config(config, [*overrides, *extra])
    if name:
        cfg["name"] = name
    result = run(cfg, runs_dir=runs_dir, quiet=quiet)
    click.echo(format_result(result.summary))
    click.echo(str(result.run_dir))
    sys.exit(exit_code(result))


COMMANDS = [train]
