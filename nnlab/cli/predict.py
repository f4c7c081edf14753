"""nnlab predict: a trained model's outputs on new inputs."""

from __future__ import annotations

import sys

import click

from nnlab.cli.options import run_arg


@click.command("predict")
@run_arg
@click.argument("input", type=click.Path())
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="A .csv, .npy or .npz file to write (default: CSV on standard output); a model with "
    "several outputs: .csv or .npz (an array per output).",
)
def predict(run, input, output):
    """Predict with the model of RUN (a run folder or its model.npz) on the rows of INPUT.

    INPUT is a CSV file of numbers (a header row is optional) or a .npy file, a row of raw
    inputs per sample, like the training data: the model's input scaling is applied here.
    Classifiers give the class (its name when the data had names) and the probabilities (or
    scores) of each class; regression models give the values. A model with several outputs
    gives the columns of each, prefixed by its name (cls_class, cls_prob_0, ..., recon_y0,
    ...), or with -o x.npz an array per output. A sequence model takes a row of its time steps'
    values (time x features) per sample.

    \b
    Examples:
      nnlab predict runs/digits-20250101-120000 samples.csv
      nnlab predict runs/digits-20250101-120000 samples.npy -o predictions.npy
      nnlab predict runs/semi_supervised-20250101-120000 samples.csv -o heads.npz
    """
    from nnlab.predict import predict_file

    text = predict_file(run, input, output)
    if text is not None:
        sys.stdout.write(text)
