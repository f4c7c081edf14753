"""nnlab predict, nnlab export, nnlab invert: use a trained model elsewhere."""

from __future__ import annotations

import sys

import click

from nnlab.export import FORMATS

run_arg = click.argument("run", type=click.Path())
output_opt = click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="A .csv, .npy or .npz file to write (default: CSV on standard output); a model with "
    "several outputs: .csv or .npz (an array per output).",
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


@click.command("export")
@run_arg
@click.option(
    "--format",
    "fmt",
    type=click.Choice(list(FORMATS)),
    help="numpy: one Python file needing only NumPy; onnx: an ONNX model (pip install "
    "nnlab[onnx]); c: a dependency-free C header. Default: from the -o suffix "
    "(.py, .onnx, .h), else numpy.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="The file to write (default: predict.py, model.onnx or model.h).",
)
@click.option(
    "--weights",
    type=click.Choice(["inline", "npz"]),
    help="numpy format: weights inlined in the file (default) or in a .npz beside it.",
)
def export(run, fmt, output, weights):
    """Export the model of RUN as a program that runs without nnlab.

    The exported model takes raw inputs, like the training data (the input scaling is part of
    it), and gives the same outputs as `nnlab predict`: dense, dropout, activation, flatten,
    rnn and lstm layers, skip (concat) and sum joins, one output or several (numpy: predict(X)
    gives a dict by output name; onnx: a graph output per output; c: an output array each).

    \b
    Examples:
      nnlab export runs/digits-20250101-120000 --format numpy -o predict.py
      python predict.py samples.csv                   # needs only NumPy
      nnlab export runs/digits-20250101-120000 -o model.onnx
      nnlab export runs/digits-20250101-120000 --format c -o model.h
    """
    from nnlab.export import export as run_export

    for path in run_export(run, fmt, output, weights=weights):
        click.echo(str(path))


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


COMMANDS = [predict, export, invert]
