"""Options, arguments and helpers shared by several commands."""

from __future__ import annotations

import click

overrides = click.option(
    "--set",
    "-s",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config key (dotted path, list indices allowed: model.layers.0.units=4); "
    "VALUE is YAML. Repeatable.",
)
runs_dir = click.option(
    "--runs-dir",
    default="runs",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder where run folders are created.",
)
quiet = click.option("--quiet", "-q", is_flag=True, help="No progress output.")
config_arg = click.argument("config", type=click.Path(dir_okay=False))


def _newest(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> str:
    """One RUN from one path, or from several (a shell pattern, ``runs/digits-*``): the run
    that started last, with a note saying so."""
    if len(values) == 1:
        return values[0]
    from pathlib import Path

    from nnlab.errors import RunError
    from nnlab.runs import read_summary

    def started(path: str) -> tuple[str, float]:
        folder = Path(path).parent if path.endswith(".npz") else Path(path)
        try:
            when = read_summary(folder).get("started")
        except RunError:
            when = None
        if isinstance(when, str):
            return (when, 0.0)
        return ("", folder.stat().st_mtime if folder.exists() else 0.0)

    chosen = max(values, key=started)
    click.echo(
        f"note: {len(values)} runs given; using the newest, {chosen} (name one run to choose)",
        err=True,
    )
    return chosen


run_arg = click.argument("run", nargs=-1, required=True, type=click.Path(), callback=_newest)
runs_arg = click.argument("runs", nargs=-1, required=True, type=click.Path())
where = click.option(
    "--where",
    "-w",
    multiple=True,
    metavar="EXPR",
    help="Keep the runs where KEY OP VALUE holds (OP: == != < <= > >=); repeat to AND. "
    "KEY is any column or config key; a unique suffix is enough (lr for optimizer.lr).",
)


def warn(message: str) -> None:
    """Print a warning line on stderr (a skipped run folder, ...)."""
    click.echo(f"warning: {message}", err=True)


def terminal_width() -> int | None:
    """The columns of the terminal the output goes to (``COLUMNS`` if set); None when it goes
    to a file or a pipe."""
    import os
    import shutil
    import sys

    if os.environ.get("COLUMNS", "").isdigit() or sys.stdout.isatty():
        return shutil.get_terminal_size((120, 24)).columns
    return None


seed = click.option(
    "--seed", type=click.IntRange(min=0), help="Shorthand for --set training.seed=N."
)


def renamed(old: str, new: str, meaning: str) -> click.Option:
    """A hidden option under a name that now means something else here (or nothing): using it
    stops with a message naming the new option."""

    def refuse(ctx: click.Context, param: click.Parameter, value: object) -> None:
        if value is not None:
            raise click.BadParameter(
                f"{meaning} is now {new}; {old} is the training seed (train, gradcheck)"
            )

    return click.option(old, hidden=True, expose_value=False, callback=refuse)
