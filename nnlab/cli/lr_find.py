"""nnlab lr-find: the learning-rate range test and a suggested rate."""

from __future__ import annotations

import click

from nnlab.cli.options import config_arg, overrides, seed


@click.command("lr-find")
@config_arg
@overrides
@seed
@click.option(
    "--start",
    type=click.FloatRange(min=0, min_open=True),
    default=1e-7,
    show_default=True,
    help="The first learning rate.",
)
@click.option(
    "--end",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="The last learning rate (the test stops earlier if the loss diverges).",
)
@click.option(
    "--steps",
    type=click.IntRange(min=20),
    default=200,
    show_default=True,
    help="Optimizer steps (batches) from --start to --end, the rate growing by the same "
    "factor each step.",
)
@click.option(
    "--method",
    type=click.Choice(["valley", "steep", "minimum"]),
    default="valley",
    show_default=True,
    help="Which reading of the curve is the suggested rate (all three are printed): valley, "
    "the middle of the longest fall of the smoothed loss (fastai's default); steep, where it "
    "falls fastest; minimum, a tenth of the rate at its minimum.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="Write the curve as an image (PNG, or SVG/PDF by the extension; needs pip install "
    "'nnlab[plot]') instead of drawing it in the terminal.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: the suggestions and the whole curve (lr, loss, smoothed) as data.",
)
def lr_find(config, overrides, seed, start, end, steps, method, output, fmt):
    """The learning-rate range test of CONFIG, and a suggested learning rate.

    \b
    Examples:
      nnlab lr-find configs/digits.yaml
      nnlab lr-find configs/mnist_mlp.yaml --set optimizer.name=sgd -o lr.png
      nnlab lr-find configs/digits.yaml --steps 400 --method steep --format json

    Trains the config's network for --steps batches while the learning rate grows
    exponentially from --start to --end (Smith 2017; run as fastai's lr_find runs it), records
    the training loss of each batch, smooths it (moving average, beta 0.98) and stops when the
    smoothed loss passes 4 times its minimum. It suggests a rate read off the smoothed curve
    and says why. The config's optimizer (its own rate and schedule aside), batch size and
    seed are used; nothing is written: the weights are thrown away, no run folder is made,
    and the same config and seed give the same curve.
    """
    import json
    import textwrap

    from nnlab.cli.options import terminal_width
    from nnlab.config import load_config
    from nnlab.lrfind import as_json, plot_curve, range_test, summary, text_curve

    sets = list(overrides) + ([f"training.seed={seed}"] if seed is not None else [])
    result = range_test(load_config(config, sets), start=start, end=end, steps=steps, method=method)
    if output:
        plot_curve(result, output)
    if fmt == "json":
        click.echo(json.dumps(as_json(result), indent=2))
        return
    width = terminal_width() or 100
    if not output:
        click.echo(text_curve(result, min(width, 100)) + "\n")
    click.echo(
        "\n".join(textwrap.fill(s, width, subsequent_indent="    ") for s in summary(result))
    )
    if output:
        click.echo(f"wrote {output}")
