"""nnlab invert: the inputs that give some outputs, for an invertible network."""

from __future__ import annotations

import sys

import click

from nnlab.cli.options import run_arg


@click.command("invert")
@run_arg
@click.argument("outputs", type=click.Path())
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="A .csv, .npy or .npz file for the recovered inputs (default: CSV on standard output).",
)
def invert(run, outputs, output):
    """Recover the inputs that give the rows of OUTPUTS, for an invertible network.

    A network is invertible when it is a chain (no joins, one output), every dense layer has a
    square, non-singular weight matrix and every activation is invertible (tanh, sigmoid,
    leaky_relu, elu, selu, softplus, linear); dropout and flatten are harmless, recurrent
    layers are refused. nnlab solves layer by layer from the output back and undoes the input
    scaling, so the recovered inputs are raw, like the training data. For another network the
    error names the first layer that is not invertible, and why.

    \b
    Examples:
      nnlab train configs/invertible.yaml
      nnlab predict runs/invertible-20250101-120000 points.csv -o y.csv
      nnlab invert runs/invertible-20250101-120000 y.csv     # gives points.csv back
    """
    from nnlab.invert import invert_file

    text = invert_file(run, outputs, output)
    if text is not None:
        sys.stdout.write(text)
