"""The network of a population: a single-run ``Model``'s graph, with every layer stacked.

The wiring (which layer reads which, joins, outputs) is the template model's; the parameters of
all members live in one (M, P) block ``theta`` whose row m is member m's flat vector, in the
single run's order (kernels first), and the gradients in ``grad``. Forward and backward are
``nnlab.nn.model.Model``'s own (the one copy of the graph walk), over the stacked layers; only
joining several inputs knows about the member axis.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nnlab.nn.layers import Dropout
from nnlab.nn.model import Model
from nnlab.population.layers import KERNELS, StackedDropout, StackedLayer
from nnlab.population.stack import Stack

Array = np.ndarray


class StackedModel(Model):
    """M networks of the template's architecture. ``thetas`` (M, P): each member's initial
    flat parameter vector; ``rates[i]``: each member's rate of dropout layer i; ``rngs``: each
    member's training-time generator (dropout)."""

    def __init__(
        self,
        template: Model,
        stack: Stack,
        thetas: Array,
        rates: dict[int, list[float]],
        rngs: Sequence[np.random.Generator],
    ):
        # a Model of stacked layers: not built from a spec (the template was), so no super()
        self.template = template
        self.stack = stack
        self.dtype = template.dtype
        self.sources, self.joins = template.sources, template.joins
        self.outputs, self.chain = template.outputs, template.chain
        self.trained_upstream = template.trained_upstream  # (backward stops below them)
        self.input_shape = template.input_shape
        self.shapes = template.shapes
        self.n_decay = template.n_decay
        self.layers: list[StackedLayer] = []
        for i, layer in enumerate(template.layers):
            if isinstance(layer, Dropout):
                self.layers.append(StackedDropout(layer, stack, rates[i], rngs))
            else:
                self.layers.append(KERNELS[type(layer)](layer, stack))
        self.theta = stack.empty((template.n_params,))
        self.theta[...] = thetas
        self.grad = stack.zeros((template.n_params,))
        self._views()
        self._join_bufs: dict = {}

    def _views(self) -> None:
        """Each layer's params and grads as views of the blocks, as the template's are."""
        M = self.stack.members
        for name, sl in zip(self.template.param_names, self.template.param_slices, strict=True):
            i, key = name.split(".")[1:]
            shape = self.template.layers[int(i)].params[key].shape
            layer = self.layers[int(i)]
            layer.params[key] = self.theta[:, sl].reshape(M, *shape)
            layer.grads[key] = self.grad[:, sl].reshape(M, *shape)

    @property
    def members(self) -> int:
        return self.stack.members

    def keep(self, rows: Array) -> None:
        """Keep the members ``rows`` only (in that order): the others have finished."""
        kept = self.theta[rows]
        self.stack.resize(len(rows))  # the layers hold the same stack
        self.theta, self.grad = self.stack.empty(kept.shape[1:]), self.stack.zeros(kept.shape[1:])
        self.theta[...] = kept
        for layer in self.layers:
            layer.keep(rows)
            layer._bufs.clear()
        self._join_bufs.clear()
        self._views()

    # ------------------------------------------------------------------ running

    def _members_view(self, X: Array) -> Array:
        """The model input with a member axis: a shared (batch, ...) input broadcast."""
        if X.ndim == len(self.input_shape) + 1:
            return np.broadcast_to(X, (self.members, *X.shape))
        return X

    def forward(self, X: Array, training: bool = False, logits: bool | list[bool] = False):
        """The outputs for a batch X, (batch, *input) shared by the members or
        (M, batch, *input): an array (M, batch, units), or a list of them for several
        outputs (``Model.forward``)."""
        if self.chain and not self.layers[0].shared_input:
            X = self._members_view(X)
        return super().forward(X, training, logits)

    def _gather(self, i: int, X: Array, values: list) -> Array:
        """Layer i's input: the model input (shared inputs as they are to the layers that take
        them), an earlier layer's output, or several of them joined."""
        srcs = self.sources[i]
        if len(srcs) == 1:
            if srcs[0] >= 0:
                return values[srcs[0]]
            return X if self.layers[i].shared_input else self._members_view(X)
        parts = [values[s] if s >= 0 else self._members_view(X) for s in srcs]
        if self.joins[i] == "sum":
            shape = parts[0].shape[1:]
        else:
            shape = (*parts[0].shape[1:-1], sum(p.shape[-1] for p in parts))
        out = self._join_bufs.get((i, shape))
        if out is None:
            out = self._join_bufs[(i, shape)] = self.stack.empty(shape)
        if self.joins[i] == "sum":
            np.add(parts[0], parts[1], out=out)
            for p in parts[2:]:
                out += p
        else:
            start = 0
            for p in parts:
                width = p.shape[-1]
                out[..., start : start + width] = p
                start += width
        return out
