"""nnlab validate: check a config without training."""

from __future__ import annotations

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
