"""nnlab predict: use a trained model on new inputs."""

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


COMMANDS = [predict]
