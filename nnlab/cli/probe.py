"""nnlab probe: can this data be learned?"""

from __future__ import annotations

import click

from nnlab.cli.options import config_arg, overrides, quiet


def _sizes(ctx, param, value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        sizes = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise click.BadParameter(f"expected sample counts like 16,64,256, got {value!r}")
    return sizes


@click.command("probe")
@config_arg
@overrides
@click.option(
    "--sizes",
    callback=_sizes,
    metavar="N1,N2,...",
    help="Training-set sizes (default: 16, 64, 256, ... and the whole training split).",
)
@click.option(
    "--epochs", type=click.IntRange(min=1), help="Epochs per training (default: the config's)."
)
@quiet
def probe(config, overrides, sizes, epochs, quiet):
    """Can CONFIG's data be learned? Overfit growing subsets, real vs shuffled labels.

    Trains CONFIG's network with its regularisation turned off (dropout rates, weight decay,
    L2 and label smoothing 0, no early stopping) on the first 16, 64, 256, ... training
    samples and on all of them, once with the real labels and once with the labels shuffled
    (the noise baseline), and prints one table: per size the share of the most frequent class,
    the training accuracy (a net that can learn the data fits small sets: 'fits?'), the
    held-out accuracy (validation split, else test split), and the same with shuffled labels.
    Trainings run in memory: nothing is written.

    \b
    Examples:
      nnlab probe configs/questions/probe_digits.yaml
      nnlab probe configs/digits.yaml --sizes 16,128,1024 --epochs 30

    Exit status: 0 done, 2 a bad config or option.
    """
    from nnlab.config import load_config
    from nnlab.probe import format_probe
    from nnlab.probe import probe as run_probe

    cfg = load_config(config, list(overrides))

    def progress(row) -> None:
        if not quiet:
            click.echo(
                f"  {row.samples} samples: train accuracy {row.train:.3f}, shuffled labels "
                f"{row.shuffled_train:.3f} ({row.seconds:.1f} s)",
                err=True,
            )

    result = run_probe(cfg, sizes=sizes, epochs=epochs, on_row=progress)
    off = ", ".join(result.turned_off) or "nothing to turn off"
    n_epochs = epochs or cfg["training"]["epochs"]
    click.echo(
        f"{result.name}: {n_epochs} epochs per size, without regularisation ({off}); "
        f"{result.n_classes} classes"
    )
    click.echo(format_probe(result))
