"""nnlab export: a trained model as a program that runs without nnlab."""

from __future__ import annotations

import click

from nnlab.cli.options import run_arg
from nnlab.export import FORMATS


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
    rnn and lstm layers, the image layers (reshape, conv2d, pooling, upsample2d) and the
    normalizations (batchnorm with its running averages, layernorm), skip (concat) and sum
    joins, one output or several (numpy: predict(X) gives a dict by output name; onnx: a graph
    output per output; c: an output array each).

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
