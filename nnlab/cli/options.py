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
run_arg = click.argument("run", type=click.Path())
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
