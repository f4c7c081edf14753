"""nnlab list: the components a config can name, with their options."""

from __future__ import annotations

import click

KINDS = ["layers", "activations", "initializers", "losses", "optimizers", "schedules", "data"]


@click.command("list")
@click.argument("kind", required=False, type=click.Choice(KINDS))
def list_(kind):
    """List the components a config can name, with their options and defaults.

    \b
    Examples:
      nnlab list                 # everything
      nnlab list initializers
    """
    from nnlab.docs import describe_registry, registries

    for name, registry in registries().items():
        if kind is None or name == kind:
            click.echo(describe_registry(name, registry))
