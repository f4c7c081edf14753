"""nnlab explain: which inputs does a trained network look at?"""

from __future__ import annotations

from pathlib import Path

import click

from nnlab.cli.options import run_arg


@click.command("explain")
@run_arg
@click.option(
    "--data",
    "split",
    default="test",
    show_default=True,
    type=click.Choice(["train", "val", "test"]),
    help="The split of the run's data to average over (the same samples as in training).",
)
@click.option(
    "--target",
    "-k",
    "target",
    metavar="K",
    help="Explain this class (index or name) or output unit for every sample (default: each "
    "sample's predicted class; the only output of a regression model).",
)
@click.option(
    "--score",
    default="logit",
    show_default=True,
    type=click.Choice(["logit", "output"]),
    help="logit: the output layer's pre-activation (the class score before softmax or "
    "sigmoid); output: the output itself (probabilities for softmax and sigmoid).",
)
@click.option(
    "-o",
    "--output",
    "image",
    type=click.Path(dir_okay=False),
    help="Image data: write the heat map to this .png (or .svg/.pdf) file.",
)
@click.option(
    "--method",
    default="gradient",
    show_default=True,
    type=click.Choice(["gradient", "integrated_gradients", "smoothgrad", "gradcam"]),
    help="gradient: d score / d input; integrated_gradients: (x - baseline) times the mean "
    "gradient along the path from the baseline (attributions that add up to score(x) - "
    "score(baseline)); smoothgrad: the gradient averaged over noisy copies of x; gradcam: "
    "the class-activation map of a convolutional layer (--layer), over the input image.",
)
@click.option(
    "--baseline",
    default="zeros",
    show_default=True,
    help="integrated_gradients: the path's start, zeros (the model input 0), mean (the split's "
    "mean input) or a number (in the model's scaled input).",
)
@click.option("--steps", default=50, show_default=True, type=click.IntRange(min=1),
              help="integrated_gradients: points along the path.")  # fmt: skip
@click.option(
    "--noise", default=0.15, show_default=True, type=click.FloatRange(min=0),
    help="smoothgrad: the noise's standard deviation, as a fraction of the inputs' range.",
)  # fmt: skip
@click.option("--noise-samples", "samples", default=50, show_default=True,
              type=click.IntRange(min=1), help="smoothgrad: noisy copies per input.")  # fmt: skip
@click.option("--noise-seed", default=0, show_default=True, type=click.IntRange(min=0),
              help="smoothgrad: the seed of the noise.")  # fmt: skip
@click.option(
    "--layer",
    metavar="NAME",
    help="gradcam: the layer of feature maps to explain, by name or index (default: the last "
    "conv2d layer).",
)
@click.option(
    "--top",
    default=10,
    show_default=True,
    type=click.IntRange(min=0),
    help="Features listed in the ranking (0: all).",
)
def explain(run, split, target, score, image, method, baseline, steps, noise, samples,
            noise_seed, layer, top):  # fmt: skip
    """Input-gradient saliency of RUN's model (or another attribution): which inputs its
    output depends on.

    For every sample of a split of the run's data, the gradient of a score (by default the
    logit of the predicted class) with respect to each input feature, averaged as mean
    absolute value over the samples: a ranking of the features, and for images (the 8x8
    digits, MNIST) a heat map, drawn in the terminal or written with -o as a PNG with one
    panel for all samples and one per predicted class. Gradients are per unit of the scaled
    input the model sees (data.scale). 'mean grad' is the signed mean: positive when a larger
    input raises the score. A model with several outputs is explained through its first.
    --method integrated_gradients and smoothgrad give attributions built from the gradients
    (Sundararajan et al. 2017; Smilkov et al. 2017). --method gradcam maps, for a
    convolutional model, where in the image the feature maps of a layer raise the score:
    relu(sum over channels of mean(d score / d map) * map), resized to the image
    (Selvaraju et al. 2017).

    \b
    Examples:
      nnlab explain runs/digits-20261123-101500 -o saliency.png
      nnlab explain runs/digits-20261123-101500 --target 3 --data train
      nnlab explain runs/threshold-20261123-101500 --top 0
      nnlab explain runs/digits-20261123-101500 --method integrated_gradients --steps 64
      nnlab explain runs/mnist_cnn-20261129-171500 --method gradcam -o gradcam.png
    """
    from nnlab.explain import Method, heat_map, heat_text, ranking
    from nnlab.explain import explain as run_explain

    if image is not None and Path(image).suffix.lower() not in (".png", ".svg", ".pdf"):
        raise click.BadParameter(
            f"{image!r} is not an image file (.png, .svg or .pdf). -o/--output is the file "
            "to write, as in every command; the class or output to explain is --target K",
            param_hint="-o/--output",
        )
    try:
        base: str | float = float(baseline)
    except ValueError:
        base = baseline
    m = Method(method, base, steps, noise, samples, noise_seed, layer)
    s = run_explain(run, split=split, output=target, score=score, method=m)
    click.echo(f"{s.method} of {s.target} over the {s.samples} samples of the {s.split} split")
    if image:
        if s.image_shape is None:
            raise click.UsageError("-o draws images; this run's data are not images")
        heat_map(s, image)
    elif s.image_shape is not None:
        what = {"grad": "|gradient|", "cam": "Grad-CAM map"}.get(s.unit, "|attribution|")
        click.echo(f"mean {what} per pixel (darker: larger):")
        click.echo(heat_text(s.mean_abs.reshape(s.image_shape)))
    click.echo(ranking(s, top))
    if image:
        click.echo(f"heat map: {image}")
