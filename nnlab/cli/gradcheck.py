"""nnlab gradcheck: is my backprop right?"""

from __future__ import annotations

import sys

import click

from nnlab.cli.options import config_arg, overrides, seed


def _entries(value: str) -> int | None:
    if value == "all":
        return None
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise click.BadParameter(f"expected a count >= 1 or 'all', got {value!r}")
    return n


@click.command("gradcheck")
@config_arg
@overrides
@click.option(
    "--samples",
    "-n",
    default=8,
    show_default=True,
    type=click.IntRange(min=1),
    help="Training samples in the batch the gradient is checked on.",
)
@click.option(
    "--entries",
    default="1000",
    show_default=True,
    metavar="N|all",
    help="Entries checked per parameter tensor: larger tensors get N of theirs, drawn at "
    "random (seeded); 'all' checks every entry (slow for big layers).",
)
@click.option(
    "--entries-seed",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Seed of the entries drawn.",
)
@seed
def gradcheck(config, overrides, samples, entries, entries_seed, seed):
    """Check the backpropagated gradients of CONFIG's model against central differences.

    Builds the model and its losses from CONFIG in float64 (training.dtype=float64), takes
    the first --samples training samples (half labelled, half not, when some have no label)
    and compares, for every parameter tensor, the gradient of the training loss computed by
    backpropagation with (f(w + eps) - f(w - eps)) / 2 eps, eps = 1e-6: every output and its
    loss weight, masks, fused softmax/sigmoid outputs, dropout on with its masks frozen. An
    entry passes when |analytic - numeric| <= 1e-5 + 1e-3 |numeric| (torch.autograd.gradcheck's
    tolerances). The L2 penalty and weight decay are applied by the optimizer and not checked.

    \b
    Examples:
      nnlab gradcheck configs/digits.yaml
      nnlab gradcheck configs/questions/semi_supervised.yaml --samples 16 --entries all

    Exit status: 0 every tensor passes, 1 some fail, 2 a bad config.
    """
    from nnlab.config import load_config
    from nnlab.experiment import build
    from nnlab.gradcheck import ATOL, EPS, RTOL, check_experiment, report

    n_entries = _entries(entries)
    extra = [f"training.seed={seed}"] if seed is not None else []
    cfg = load_config(config, [*overrides, *extra, "training.dtype=float64"])
    exp = build(cfg)
    checks = check_experiment(exp, samples=samples, entries=n_entries, seed=entries_seed)
    n = min(samples, len(exp.data.train))
    click.echo(
        f"{cfg['name']}: gradient check on {n} training samples in float64, "
        f"{exp.model.n_params:,d} parameters (eps {EPS:g}, pass: |a - n| <= {ATOL:g} + "
        f"{RTOL:g} |n|)"
    )
    click.echo(report(checks, exp.model))
    sys.exit(0 if all(c.passed for c in checks) else 1)
