"""nnlab predict, nnlab invert: use a trained model on new data."""

from __future__ import annotations

import sys

import click

run_arg = click.argument("run", type=click.Path())
output_opt = click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="A .csv or .npy file to write (default: CSV on standard output).",
)


@click.command("predict")
@run_arg
@click.argument("input", type=click.Path())
@output_opt
def predict(run, input, output):
    """Predict with the model of RUN (a run folder or its model.npz) on the rows of INPUT.

    INPUT is a CSV file of numbers (a header row is optional) or a .npy file, a row of raw
    inputs per sample, like the training data: the model's input scaling is applied here.
    Classifiers give the class (its name when the data had names) and the probabilities (or
    scores) of each class; regression models give the values.

    \b
    Examples:
      nnlab predict runs/digits-20250101-120000 samples.csv
      nnlab predict runs/digits-20250101-120000 samples.npy -o predictions.npy
    """
    from nnlab.predict import predict_file

    text = predict_file(run, input, output)
    if text is not None:
        sys.stdout.write(text)


@click.command("invert")
@run_arg
@click.argument("outputs", type=click.Path())
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="A .csv or .npy file for the recovered inputs (default: CSV on standard output).",
)
def invert(run, outputs, output):
    """Recover the inputs that give the rows of OUTPUTS, for an invertible network.

    A network is invertible when every dense layer has a square, non-singular weight matrix
    and every activation is invertible (tanh, sigmoid, leaky_relu, elu, selu, softplus,
    linear). nnlab solves layer by layer from the output back and undoes the input scaling,
    so the recovered inputs are raw, like the training data. For another network the error
    names the first layer that is not invertible, and why.

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


COMMANDS = [predict, invert]
