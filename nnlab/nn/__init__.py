"""The NumPy core: layers, activations, initializers, losses, optimizers and the model.

Nothing here knows about files, configs on disk or the command line.
"""

from nnlab.nn import conv, norm, pooling  # noqa: F401  (register the image and normalization layers)
from nnlab.nn.activations import ACTIVATIONS
from nnlab.nn.es import ES  # noqa: F401  (registers es)
from nnlab.nn.initializers import INITIALIZERS
from nnlab.nn.latent import Sample, Slice  # noqa: F401  (registers sample and slice)
from nnlab.nn.layers import LAYERS
from nnlab.nn.losses import LOSSES
from nnlab.nn.model import Model
from nnlab.nn.optimizers import OPTIMIZERS, SCHEDULES
from nnlab.nn.recurrent import LSTM, RNN  # noqa: F401  (registers rnn and lstm)

__all__ = ["ACTIVATIONS", "INITIALIZERS", "LAYERS", "LOSSES", "OPTIMIZERS", "SCHEDULES", "Model"]
