"""nnlab generate: inputs drawn from a trained variational autoencoder, for a label."""

from __future__ import annotations

import click

from nnlab.cli.options import run_arg


@click.command("generate")
@run_arg
@click.option(
    "--label",
    "-l",
    "labels",
    multiple=True,
    metavar="LABEL",
    help="Draw inputs of this class (index or name; repeat it for several, or 'all'); a "
    "conditional VAE needs one, an unconditional one none.",
)
@click.option(
    "-n", "count", default=16, show_default=True, type=click.IntRange(min=1),
    help="Samples per label.",
)  # fmt: skip
@click.option("--sample-seed", default=0, show_default=True, type=click.IntRange(min=0),
              help="Seed of the draws from the prior.")  # fmt: skip
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="Write the samples: an image grid (.png, .svg, .pdf: a row per label) or their values "
    "(.npy, .npz, .csv). Without it they are drawn in the terminal.",
)
def generate(run, labels, count, sample_seed, output):
    """Draw inputs from RUN's variational autoencoder: z from the prior N(0, 1), decoded.

    For a conditional VAE (data.label_input: true) the label goes in with z, and the samples
    are inputs of that class: p(x | y), what running a classifier backwards cannot give. The
    samples are the reconstruction output, in the data's raw units (pixels 0..16 for digits).

    \b
    Examples:
      nnlab generate runs/cvae-20261123-101500 --label 3 -n 16 -o samples.png
      nnlab generate runs/cvae-20261123-101500 --label all -n 8 -o grid.png
    """
    from nnlab.generate import generate as draw
    from nnlab.generate import text, write

    g = draw(run, list(labels), count, sample_seed)
    if output:
        write(g, output)
        click.echo(f"{g.samples.shape[0] * g.samples.shape[1]} samples: {output}")
    else:
        click.echo(text(g))
