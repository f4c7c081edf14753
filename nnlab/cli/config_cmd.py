"""nnlab validate, nnlab config."""

from __future__ import annotations

import json

import click

from nnlab.cli.options import config_arg, overrides


@click.command("validate")
@config_arg
@overrides
def validate(config, overrides):
    """Check CONFIG: keys, types and names, and that data, model and loss fit together.

    \b
    Example:
      nnlab validate configs/digits.yaml --set model.layers.0.units=64
    """
    from nnlab.config import load_config
    from nnlab.experiment import build

    cfg = load_config(config, list(overrides))
    exp = build(cfg)
    sizes = ", ".join(f"{n} {k}" for k, n in exp.data.sizes.items())
    click.echo(
        f"{config}: OK (data {exp.data.name}: {sizes}; model {exp.model.n_params:,d} parameters)"
    )


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


COMMANDS = [validate, config]
