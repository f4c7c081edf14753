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
    "--seeds",
    metavar="N|LIST",
    help="Train once per seed, together in populations: N (seeds 0..N-1) or a list (0,3,7). "
    "Each seed gets its run folder, runs/NAME-<stamp>/seed-NNN; one line sums them up.",
)
@click.option(
    "--resume",
    "resume_run",
    type=click.Path(file_okay=False),
    help="Continue a killed or interrupted run folder from its last checkpoint.",
)
@quiet
def train(config, overrides, runs_dir, name, seed, seeds, resume_run, quiet):
    """Train the network that CONFIG describes and record it in a run folder.

    \b
    Examples:
      nnlab train configs/xor.yaml
      nnlab train configs/digits.yaml --set optimizer.lr=0.01 --set training.seed=3
      nnlab train configs/threshold.yaml --set model.layers.0.activation=sigmoid
      nnlab train configs/xor.yaml --seeds 100     # seeds 0..99 in one population
      nnlab train --resume runs/mnist_mlp-20261123-101500

    The run folder (under --runs-dir) gets config.yaml (the resolved config), metrics.csv
    (a row per epoch), summary.json and model.npz, and while training checkpoint.npz. The
    folder's path is printed last. Ctrl-C or SIGTERM stops at a safe point (status
    interrupted, exit 130/143); --resume continues such a run, or one that was killed, and
    its metrics are those of an uninterrupted run.

    With --seeds the seeds train together as one population (dense, activation, dropout and
    flatten layers; others train one seed at a time), each exactly as it would alone, into
    runs/NAME-<stamp>/seed-NNN; the last lines give the result over the seeds (mean ± sample
    standard deviation) and the parent folder. Exit status: 0 when every seed completed or some
    diverged, 3 when all diverged, 1 when one failed, 130/143 interrupted (each seed's folder
    then says interrupted and can be resumed with --resume).
    """
    from nnlab.config import load_config
    from nnlab.lifecycle import exit_code, resume
    from nnlab.lifecycle import train as run
    from nnlab.result import format_result

    if resume_run is not None:
        if config is not None or overrides or seed is not None or name or seeds:
            raise click.UsageError(
                "--resume continues a run as it was: give no CONFIG or --set/--seed/--seeds/"
                "--name with it"
            )
        result = resume(resume_run, quiet=quiet)
        click.echo(format_result(result.summary, result.run_dir))
        click.echo(str(result.run_dir))
        sys.exit(exit_code(result))
    if config is None:
        raise click.UsageError("give a CONFIG file (or --resume RUN)")
    if seeds is not None and seed is not None:
        raise click.UsageError("give --seed N (one run) or --seeds N|LIST (many), not both")
    extra = [f"training.seed={seed}"] if seed is not None else []
    cfg = load_config(config, [*overrides, *extra])
    if name:
        cfg["name"] = name
    if seeds is not None:
        sys.exit(_train_seeds(cfg, seeds, runs_dir, quiet))
    result = run(cfg, runs_dir=runs_dir, quiet=quiet)
    click.echo(format_result(result.summary, result.run_dir))
    click.echo(str(result.run_dir))
    sys.exit(exit_code(result))


def _train_seeds(cfg: dict, seeds: str, runs_dir: str, quiet: bool) -> int:
    from nnlab.population.run import exit_code, headline, train_seeds
    from nnlab.sweeps.spec import parse_seeds

    result = train_seeds(cfg, parse_seeds(seeds), runs_dir, quiet=quiet,
                         say=lambda text: click.echo(text, err=True))  # fmt: skip
    n = len(result.seeds)
    how = ", ".join(str(p) for p in result.populations) or "none"
    alone = f", {len(result.alone)} alone" if result.alone else ""
    click.echo(f"{cfg['name']}: {n} seeds in {result.seconds:.2f} s (populations of {how}{alone})")
    click.echo(f"  {headline(result.summaries)}")
    click.echo(str(result.root))
    return exit_code(result)
