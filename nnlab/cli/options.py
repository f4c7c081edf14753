"""Options shared by several commands."""

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
