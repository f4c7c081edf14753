"""nnlab activations: what each layer outputs in training mode and in evaluation mode."""

from __future__ import annotations

import click

from nnlab.cli.options import renamed, run_arg


@click.command("activations")
@run_arg
@click.option(
    "--data",
    "split",
    default="train",
    show_default=True,
    type=click.Choice(["train", "val", "test"]),
    help="The split of the run's data whose samples go through the network.",
)
@click.option(
    "--passes",
    default=20,
    show_default=True,
    type=click.IntRange(min=1),
    help="Training-mode passes (dropout masks drawn anew each) averaged.",
)
@click.option(
    "--mask-seed",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Seed of the dropout masks drawn.",
)
@renamed("--seed", "--mask-seed", "the seed of the dropout masks")
def activations(run, split, passes, mask_seed):
    """The mean output of each layer of RUN's model, in evaluation and in training mode.

    Runs the samples of a split of the run's data through the trained network in evaluation
    mode (dropout off: the layer is the identity) and in training mode (dropout on, averaged
    over --passes draws of the masks) and prints per layer both means and their ratio. With
    inverted dropout (the default, scale: true) the ratio is about 1: kept units are scaled
    by 1/(1 - rate), so what the next layer receives has the same mean in training and
    evaluation. With scale: false the dropout layer's ratio is 1 - rate (keep_prob): at
    evaluation the layers after it receive inputs 1/keep_prob times larger than in training.

    \b
    Examples:
      nnlab activations runs/dropout-20261123-101500
      nnlab activations runs/dropout-20261123-101500 --data test --passes 50
    """
    from tabulate import tabulate

    from nnlab.explain import run_inputs
    from nnlab.layerstats import mode_means

    model, _, _, X = run_inputs(run, split)
    rows = mode_means(model, X, passes=passes, seed=mask_seed)
    table = [
        [
            str(r["layer"]),
            r["name"],
            r["type"],
            r["activation"] or "-",
            f"{r['eval_mean']:.4f}",
            f"{r['train_mean']:.4f}",
            f"{r['ratio']:.3f}",
        ]
        for r in rows
    ]
    headers = ["layer", "name", "type", "activation", "eval mean", "train mean", "train/eval"]
    click.echo(
        f"mean output per layer over the {X.shape[0]} samples of the {split} split "
        f"(training mode: {passes} passes)"
    )
    click.echo(tabulate(table, headers=headers, tablefmt="simple", disable_numparse=True))
