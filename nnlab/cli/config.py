"""nnlab config: a config resolved, or the JSON Schema of configs."""

from __future__ import annotations

import json

import click

from nnlab.cli.options import overrides


@click.command("config")
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@overrides
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["yaml", "json", "markdown"]),
    default=None,
    help="Output format (markdown: with --schema, the key reference).",
)
@click.option("--schema", is_flag=True, help="Print the JSON Schema of a config instead.")
def config(config, overrides, fmt, schema):
    """Print CONFIG resolved: every default filled in, names in canonical form.

    \b
    Examples:
      nnlab config configs/xor.yaml --set optimizer.name=adam
      nnlab config --schema > nnlab.schema.json     # for editors' YAML completion
      nnlab config --schema --format markdown       # every key, its default and values
    """
    from nnlab.config import config_schema, dump_yaml, load_config

    if schema:
        if fmt == "markdown":
            from nnlab.docs import reference_markdown

            click.echo(reference_markdown(), nl=False)
        else:
            click.echo(json.dumps(config_schema(), indent=2))
        return
    if config is None:
        raise click.UsageError("give a CONFIG file, or --schema")
    cfg = load_config(config, list(overrides))
    if fmt == "json":
        click.echo(json.dumps(cfg, indent=2))
    else:
        click.echo(dump_yaml(cfg), nl=False)
