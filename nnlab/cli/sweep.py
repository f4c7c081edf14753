"""nnlab sweep: a grid of trials, run in parallel and resumable."""

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
    "linspace(a, b, n), logspace(a, b, n). Repeatable: the grid is the cartesian product.",
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
def sweep(spec, grid, overrides, seeds, jobs, threads, name, runs_dir, print_trials, rerun,
          cluster, population, quiet):  # fmt: skip
    """Run a grid of trials: SPEC is a sweep file (base + axes + seeds) or a config with -g axes.

    \b
    Examples:
      nnlab sweep configs/digits.yaml --seeds 5 --jobs 2 \\
          -g model.layers.0.initializer=he_normal,glorot_uniform,zeros -g optimizer.lr=0.1,0.01
      nnlab sweep configs/sweeps/init_lr.yaml             # the same kind of grid, in YAML
      nnlab sweep configs/sweeps/init_lr.yaml --print-trials
      nnlab compare runs/sweeps/init_lr --group-seeds     # then: one table
      nnlab sweep configs/sweeps/init_lr.yaml --cluster tcp://10.0.0.5:8786   # on Dask

    \b
    A trial is one resolved config and seed; its identity is the hash of that config. Trials
    whose configs differ only in member-wise keys (seed, initializers, optimizer numbers,
    dropout rates, loss weights) train together as a population, one task each, split so that
    each fits in memory and each worker gets one; --print-trials shows the populations, the
    index says which trials ran alone and why. Every
    trial is validated before any runs. The sweep folder RUNS_DIR/sweeps/NAME holds sweep.yaml,
    index.json and index.log (every trial, its run folder and status) and a run folder per
    trial in trials/. Running the same sweep again skips trials that completed (or diverged:
    they would again), continues interrupted ones from their checkpoint and reruns the rest.
    Ctrl-C or SIGTERM stops the running trials at a safe point and marks them interrupted.

    \b
    Exit status: 0 every trial completed or diverged; N (1-100; 101 for more) N trials failed;
    2 a bad sweep or config (nothing ran); 130/143 interrupted by Ctrl-C/SIGTERM.
    """
    from nnlab.sweeps import check_trials, load_sweep, run_sweep

    sw = load_sweep(spec, list(grid), list(overrides), seeds, jobs, name)
    check_trials(sw.trials)
    if print_trials:
        _print_trials(sw, runs_dir, population == "on", jobs)
        return
    executor = _executor(cluster, jobs or sw.jobs, quiet)
    try:
        result = run_sweep(
            sw,
            runs_dir=runs_dir,
            jobs=jobs,
            rerun=tuple(rerun),
            threads=threads,
            quiet=quiet,
            executor=executor,
            population=population == "on",
        )
    finally:
        if executor is not None:
            executor.close()
    _report(sw, result)
    sys.exit(result.exit_code)


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


def _report(sw: Sweep, result: SweepResult) -> None:
    """How the sweep ended: the counts, the failures on stderr, where its folder is."""
    counts = ", ".join(f"{n} {status}" for status, n in sorted(result.counts.items()))
    resumed = f", {result.resumed} continued from a checkpoint" if result.resumed else ""
    click.echo(
        f"sweep {sw.name}: {result.total} trials: {counts} "
        f"({result.skipped} done before, {result.ran} run now{resumed} in {result.seconds:.1f} s)"
    )
    for e in result.failures[:10]:
        click.echo(f"  {e['run']}: {e['status']}: {e.get('error') or ''}".rstrip(), err=True)
    if result.failed > 10:
        click.echo(f"  ... and {result.failed - 10} more (see index.json)", err=True)
    if result.signal is not None:
        click.echo("interrupted: run the same command again to resume", err=True)
    click.echo(
        f"compare: nnlab compare {result.sweep_dir}" + (" --group-seeds" if sw.seeds else "")
    )
    click.echo(str(result.sweep_dir))
