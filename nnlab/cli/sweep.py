"""nnlab sweep: a grid of trials, or a search (Optuna), run in parallel and resumable."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from nnlab.cli.options import overrides, quiet, runs_dir

if TYPE_CHECKING:
    from nnlab.sweeps import Executor, Sweep, SweepResult


@click.command("sweep")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option(
    "--grid",
    "-g",
    multiple=True,
    metavar="KEY=V1,V2,...",
    help="An axis of the grid: a key path (as --set, list indices allowed) and its values, "
    "each YAML, split at commas outside brackets and quotes; or KEY=range(start, stop[, step]), "
    "linspace(a, b, n), logspace(a, b, n). Repeatable: the grid is the cartesian product. "
    "A search also takes uniform(a, b), loguniform(a, b), int(a, b[, log]), choice(v1, ...), "
    "and samples a list as a choice.",
)
@click.option(
    "--sampler",
    type=click.Choice(["grid", "random", "tpe", "cmaes"]),
    help="grid (the default without a search: section): every combination; random, tpe or "
    "cmaes: an Optuna search of --trials sampled configs (needs pip install 'nnlab[search]').",
)
@click.option(
    "--trials", type=click.IntRange(min=1), help="A search's sampled configs (default 20)."
)
@click.option(
    "--sampler-seed",
    type=click.IntRange(min=0),
    help="The search sampler's seed (default 0): the same seed samples the same configs.",
)
@click.option(
    "--objective",
    metavar="METRIC[:min|max]",
    help="What a search optimizes: a metric's last value (default: val_accuracy, else the "
    "first validation metric; min/max from the name unless given).",
)
@click.option(
    "--pruner",
    type=click.Choice(["none", "median", "asha"]),
    help="Stop hopeless search trials early on their per-epoch objective (default none).",
)
@overrides
@click.option(
    "--seeds",
    metavar="N|S1,S2,...",
    help="Run every grid point with N seeds (0..N-1) or with the seeds listed.",
)
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=1),
    help="Trials run in parallel processes (default: the sweep file's jobs, else 1). Each "
    "worker limits its BLAS threads to cores // jobs.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    help="BLAS threads per worker (default: cores // jobs).",
)
@click.option("--name", help="The sweep's name: its folder is RUNS_DIR/sweeps/NAME.")
@runs_dir
@click.option(
    "--print-trials", is_flag=True, help="List the trials and what a run would do; run nothing."
)
@click.option(
    "--rerun",
    type=click.Choice(["diverged", "all"]),
    multiple=True,
    help="Also rerun diverged trials, or all trials (failed and interrupted ones always rerun).",
)
@click.option(
    "--cluster",
    metavar="tcp://HOST:PORT",
    help="Run the trials on the Dask cluster whose scheduler is at this address (needs "
    "pip install 'nnlab[dask]' here and nnlab on every worker); the run folders are written "
    "here. --jobs and --threads are then the cluster's business.",
)
@click.option(
    "--population",
    type=click.Choice(["on", "off"]),
    default="on",
    show_default=True,
    help="on: trials that differ only in seeds, initializers, optimizer numbers, dropout rates "
    "or loss weights train together as populations (one task each, a run folder per trial); "
    "off: every trial in its own task.",
)
@quiet
def sweep(
    spec, grid, overrides, seeds, jobs, threads, name, runs_dir, print_trials, rerun, cluster,
    population, quiet, **search,
):  # fmt: skip
    """Run a grid of trials: SPEC is a sweep file (base + axes + seeds) or a config with -g axes.
    Or a search: Optuna samples the axes (--sampler random|tpe|cmaes, or a search: section).

    \b
    Examples:
      nnlab sweep configs/digits.yaml --seeds 5 --jobs 2 \\
          -g model.layers.0.initializer=he_normal,glorot_uniform,zeros -g optimizer.lr=0.1,0.01
      nnlab sweep configs/sweeps/init_lr.yaml             # the same kind of grid, in YAML
      nnlab sweep configs/sweeps/init_lr.yaml --print-trials
      nnlab compare runs/sweeps/init_lr --group-seeds     # then: one table
      nnlab sweep configs/sweeps/init_lr.yaml --cluster tcp://10.0.0.5:8786   # on Dask
      nnlab sweep configs/sweeps/digits_search.yaml       # 40 trials of TPE, 3 seeds each
      nnlab sweep configs/digits.yaml --sampler random --trials 30 --seeds 3 --jobs 2 \\
          -g 'optimizer.lr=loguniform(1e-4, 1e-1)' -g 'model.layers.0.units=int(16, 512, log)'

    \b
    A trial is one resolved config and seed; its identity is the hash of that config. Trials
    that differ only in seeds, initializers, optimizer numbers, dropout rates or loss weights
    train together as populations (--population; --print-trials shows them). Every
    trial is validated before any runs. The sweep folder RUNS_DIR/sweeps/NAME holds sweep.yaml,
    index.json and index.log (every trial, its run folder and status) and a run folder per
    trial in trials/. Running the same sweep again skips trials that completed (or diverged:
    they would again), continues interrupted ones from their checkpoint and reruns the rest.
    Ctrl-C or SIGTERM stops the running trials at a safe point and marks them interrupted.
    A search keeps its Optuna study in the sweep folder (study.journal): run it again and it
    continues where it stopped, up to --trials sampled configs, each told the mean of its seeds.

    \b
    Exit status: 0 every trial completed, diverged or was pruned; N (1-100; 101 for more) N
    trials failed; 2 a bad sweep or config (nothing ran); 130/143 interrupted by Ctrl-C/SIGTERM.
    """
    from nnlab.sweeps import check_trials, load_sweep, run_sweep

    search["seed"] = search.pop("sampler_seed")  # sampler, trials, seed, objective, pruner
    sw = load_sweep(spec, list(grid), list(overrides), seeds, jobs, name, search)
    if sw.search is not None:
        _check_search(sw, rerun, print_trials)
    check_trials(sw.trials)
    if print_trials:
        _print_trials(sw, runs_dir, population == "on", jobs)
        return
    executor = _executor(cluster, jobs or sw.jobs, quiet)
    try:
        result = run_sweep(sw, runs_dir, jobs, tuple(rerun), threads, quiet, executor=executor,
                           population=population == "on")  # fmt: skip
    finally:
        if executor is not None:
            executor.close()
    _report(sw, result)
    sys.exit(result.exit_code)


def _check_search(sw: Sweep, rerun: tuple, print_trials: bool) -> None:
    """What a search cannot do: rerun its told trials, list trials not sampled yet."""
    from nnlab.errors import ConfigError
    from nnlab.sweeps.search import check_space, import_optuna

    import_optuna()
    check_space(sw)
    if rerun:
        raise ConfigError(
            "a search's trials are told to its study once; a new search needs a new --name",
            source="--rerun",
        )
    if print_trials:
        raise ConfigError(
            "a search samples its trials as it runs; there is no list to print before",
            source="--print-trials",
        )


def _print_trials(sw: Sweep, runs_dir: str, population: bool, jobs: int | None) -> None:
    """The trials of the grid, what a run would do with each (and the population it would
    train in), and their count."""
    from tabulate import tabulate

    from nnlab.sweeps import trial_table

    for note in sw.notes:
        click.echo(f"note: {note}", err=True)
    rows = trial_table(sw, runs_dir, population, jobs)
    click.echo(tabulate(rows, headers="keys", tablefmt="simple", disable_numparse=True))
    todo = [r for r in rows if r["action"] != "skip"]  # run, or resume
    shape = " x ".join([*(str(len(a.values)) for a in sw.axes), f"{len(sw.seeds or [0])} seeds"])
    done = len(sw.trials) - len(todo)
    line = f"{len(sw.trials)} trials ({shape}); {len(todo)} to run, {done} done"
    if population and todo:
        pops = {r["runs as"] for r in todo if r["runs as"].startswith("population")}
        alone = sum(r["runs as"].startswith("alone") for r in todo)
        line += f"; in {len(pops)} population(s) and {alone} alone"
    click.echo(line)


def _executor(cluster: str | None, jobs: int, quiet: bool) -> Executor | None:
    """The Dask executor for --cluster (None: local worker processes), with its notes."""
    if cluster:
        from nnlab.sweeps.dask_executor import DaskExecutor

        executor = DaskExecutor(cluster)
        for note in executor.notes:
            click.echo(f"note: {note}", err=True)
        return executor
    from nnlab.threads import cores

    if jobs > cores() and not quiet:
        click.echo(f"note: {jobs} jobs on {cores()} cores: the trials share cores", err=True)
    return None


def _report_search(sw: Sweep, result: SweepResult) -> None:
    """The study's trials by state and its best config."""
    from nnlab.sweeps.search import best, counts

    states = ", ".join(f"{n} {s}" for s, n in sorted(counts(result.sweep_dir, sw.name).items()))
    click.echo(f"search {sw.search.sampler}: {states} of {sw.search.trials} trials")
    b = best(result.sweep_dir, sw.name)
    if b is not None:
        params = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in b["params"].items())  # fmt: skip
        click.echo(f"best: trial {b['number']}: {b['value']:.4f}  {params}")


def _report(sw: Sweep, result: SweepResult) -> None:
    """How the sweep ended: the counts, the failures on stderr, where its folder is."""
    counts = ", ".join(f"{n} {status}" for status, n in sorted(result.counts.items()))
    resumed = f", {result.resumed} continued from a checkpoint" if result.resumed else ""
    what = "seed runs" if sw.search is not None else "trials"
    click.echo(
        f"sweep {sw.name}: {result.total} {what}: {counts} "
        f"({result.skipped} done before, {result.ran} run now{resumed} in {result.seconds:.1f} s)"
    )
    for e in result.failures[:10]:
        click.echo(f"  {e['run']}: {e['status']}: {e.get('error') or ''}".rstrip(), err=True)
    if result.failed > 10:
        click.echo(f"  ... and {result.failed - 10} more (see index.json)", err=True)
    if result.signal is not None:
        click.echo("interrupted: run the same command again to resume", err=True)
    if sw.search is not None:
        _report_search(sw, result)
    click.echo(
        f"compare: nnlab compare {result.sweep_dir}" + (" --group-seeds" if sw.seeds else "")
    )
    click.echo(str(result.sweep_dir))
