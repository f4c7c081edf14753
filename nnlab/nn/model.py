"""A network built from the ``model`` section of a config: forward, backward, parameters.

Layers run in the order they are listed. Each reads the previous layer's output, or with
``inputs:`` one or several earlier layers (or ``input``, the model's input) joined by
concatenation or sum: skip connections and shared trunks with several heads. A plain list of
layers is a chain and takes a straight path.

All parameters live in one flat vector ``theta`` (and their gradients in ``grad``); each layer's
``params``/``grads`` are views into them. Optimizers update the flat vectors in a few NumPy calls
whatever the number of layers, and a gradient check perturbs one vector. Parameters that weight
decay applies to (kernels) come first: ``theta[:n_decay]``. State that layers update without
gradients (batchnorm's running averages) lives in a second flat vector, ``buffers``, with the
layers' ``buffers`` dicts as views into it: saved with the weights and in checkpoints, never
touched by an optimizer (PyTorch's buffers).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from nnlab.errors import ConfigError
from nnlab.memory import check_fits
from nnlab.nn.initializers import planning
from nnlab.nn.layers import INPUT, LAYERS, Layer

Array = np.ndarray
#: samples per forward pass of ``Model.predict`` (and of the exported NumPy program, which
#: computes in the same batches: OpenBLAS sums a product's terms in an order that depends on
#: its number of rows, so the batches are part of the numbers)
PREDICT_BATCH = 1024


class Model:
    """Layers wired into a graph, with their parameters in one flat vector.

    ``inputs[i]`` lists the names layer i reads (None: the previous layer), ``joins[i]`` how
    several are combined, ``outputs`` the names of the output layers (None: the last layer).
    """

    def __init__(
        self,
        layers: list[Layer],
        input_shape: tuple[int, ...],
        rng: np.random.Generator,
        dtype: Any = np.float32,
        spec: dict | None = None,
        names: list[str | None] | None = None,
        inputs: list[list[str] | None] | None = None,
        joins: list[str] | None = None,
        outputs: list[str] | None = None,
        max_params: int | None = None,
    ):
        """``max_params``: refuse, before allocating them, weights of more parameters (a model
        read back from a file holds no more than the file)."""
        if not layers:
            raise ConfigError("a model needs at least one layer", "model.layers")
        n = len(layers)
        self.layers = layers
        self.input_shape = tuple(input_shape)
        self.dtype = np.dtype(dtype)
        self.spec = spec
        self.names = [nm or f"layers[{i}]" for i, nm in enumerate(names or [None] * n)]
        self.joins = joins or ["concat"] * n
        self._wire(names or [None] * n, inputs or [None] * n, outputs)
        with planning() as weights:  # what the weights need, before any is allocated
            self._build_layers(rng)
        kept = sum(size for size, _ in weights)
        if max_params is not None and kept // self.dtype.itemsize > max_params:
            raise ConfigError(
                f"{kept // self.dtype.itemsize:,} parameters, more than the {max_params:,} given",
                "model",
            )
        drawing = max((peak - size for size, peak in weights), default=0)
        check_fits(  # the weights, the largest draw beside them; then the flat copies of _flatten
            max(kept + drawing, 3 * kept),
            f"a model of {kept // self.dtype.itemsize:,} {self.dtype.name} parameters",
            "model",
        )
        shapes = self._build_layers(rng)
        self.shapes = shapes
        self.output_shapes = [shapes[j] for j in self.outputs]
        self.output_shape = self.output_shapes[0]
        self._join_bufs: dict = {}
        self._flatten()

    def _build_layers(self, rng: np.random.Generator) -> list[tuple[int, ...]]:
        """Build every layer in order; returns their output shapes."""
        shapes: list[tuple[int, ...]] = []
        # whether a layer or one it reads, directly or not, has parameters: only then does
        # backpropagation need the gradient of its output (a reshape first needs none)
        self.trained_upstream: list[bool] = []
        for i, layer in enumerate(self.layers):
            in_shape = self._joined_shape(i, shapes)
            upstream = any(s >= 0 and self.trained_upstream[s] for s in self.sources[i])
            try:
                shapes.append(tuple(layer.build(in_shape, rng, self.dtype)))
            except ConfigError as e:  # a layer names its own key (or none): prefix its place
                where = f"model.layers[{i}]" + (f".{e.path}" if e.path else "")
                raise ConfigError(e.detail, where) from None
            self.trained_upstream.append(upstream or bool(layer.params))
        return shapes

    @classmethod
    def from_spec(
        cls,
        spec: dict,
        input_shape: tuple[int, ...],
        rng: np.random.Generator,
        dtype: Any,
        max_params: int | None = None,
    ) -> Model:
        """Build from a resolved ``model`` section (see ``nnlab.config``)."""
        layers, names, inputs, joins = [], [], [], []
        for s in spec["layers"]:
            _, _, opts = LAYERS.split(s)
            layers.append(LAYERS.build(s))
            names.append(opts.get("name"))
            ins = opts.get("inputs")
            inputs.append([ins] if isinstance(ins, str) else ins)
            joins.append(opts.get("join", "concat"))
        outputs = [o["layer"] for o in spec["outputs"]] if spec.get("outputs") else None
        return cls(layers, input_shape, rng, dtype, spec, names, inputs, joins, outputs, max_params)

    # ------------------------------------------------------------------ wiring

    def _wire(self, names: list, inputs: list, outputs: list[str] | None) -> None:
        index: dict[str, int] = {}
        self.sources: list[list[int]] = []  # -1 is the model input
        for i, (name, ins) in enumerate(zip(names, inputs, strict=True)):
            if ins is None:
                self.sources.append([i - 1])
            else:
                if not ins:
                    raise ConfigError("inputs: is an empty list", f"model.layers[{i}].inputs")
                srcs = []
                for src in ins:
                    if src == INPUT:
                        srcs.append(-1)
                    elif src in index:
                        srcs.append(index[src])
                    else:
                        what = (
                            "a later layer: a layer reads only earlier ones"
                            if src in names[i:]
                            else "not the name of a layer"
                        )
                        raise ConfigError(
                            f"{src!r} is {what} (it can read: {', '.join([INPUT, *index])})",
                            f"model.layers[{i}].inputs",
                        )
                self.sources.append(srcs)
            if name is not None:
                if name == INPUT or name in index:
                    what = "is reserved for the model's input" if name == INPUT else "is taken"
                    raise ConfigError(f"the name {name!r} {what}", f"model.layers[{i}].name")
                index[name] = i
        n = len(names)
        if outputs is None:
            self.outputs = [n - 1]
        else:
            self.outputs = []
            for k, out in enumerate(outputs):
                if out not in index:
                    raise ConfigError(
                        f"{out!r} is not the name of a layer (names: {', '.join(index) or 'none'})",
                        f"model.outputs[{k}].layer",
                    )
                self.outputs.append(index[out])
        used = {s for srcs in self.sources for s in srcs} | set(self.outputs)
        for i in range(n):
            if i not in used:
                raise ConfigError(
                    f"the output of layer {self.names[i]} goes nowhere: no layer reads it and it "
                    "is not an output (list it in model.outputs, or in a later layer's inputs)",
                    f"model.layers[{i}]",
                )
        self.consumers = [[j for j in range(n) if i in self.sources[j]] for i in range(n)]
        self.chain = outputs is None and all(s == [i - 1] for i, s in enumerate(self.sources))

    def _joined_shape(self, i: int, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        ins = [self.input_shape if s < 0 else shapes[s] for s in self.sources[i]]
        if len(ins) == 1:
            return ins[0]
        where = f"model.layers[{i}].inputs"
        if self.joins[i] == "sum":
            if any(s != ins[0] for s in ins):
                raise ConfigError(f"join: sum needs inputs of one shape, got {ins}", where)
            return ins[0]
        if any(s[:-1] != ins[0][:-1] for s in ins):
            raise ConfigError(
                f"join: concat needs inputs that differ only in the last axis, got {ins}", where
            )
        return (*ins[0][:-1], sum(s[-1] for s in ins))

    # ------------------------------------------------------------------ parameters

    def _flatten(self) -> None:
        self._flatten_buffers()
        entries = []  # (decay?, layer index, key, array)
        for i, layer in enumerate(self.layers):
            for key, value in layer.params.items():
                entries.append((key not in layer.no_decay, i, key, value))
        entries.sort(key=lambda e: not e[0])  # stable: kernels first, in layer order
        total = sum(e[3].size for e in entries)
        check_fits(2 * total * self.dtype.itemsize, f"a model of {total:,} parameters", "model")
        self.theta = np.empty(total, self.dtype)
        self.grad = np.zeros(total, self.dtype)
        self.n_decay = sum(e[3].size for e in entries if e[0])
        self.param_names: list[str] = []
        self.param_slices: list[slice] = []
        offset = 0
        for _, i, key, value in entries:
            n = value.size
            view = self.theta[offset : offset + n].reshape(value.shape)
            view[...] = value
            layer = self.layers[i]
            layer.params[key] = view
            layer.grads[key] = self.grad[offset : offset + n].reshape(value.shape)
            self.param_names.append(f"layers.{i}.{key}")
            self.param_slices.append(slice(offset, offset + n))
            offset += n

    def _flatten_buffers(self) -> None:
        entries = [
            (i, k, v) for i, layer in enumerate(self.layers) for k, v in layer.buffers.items()
        ]
        self.buffers = np.empty(sum(v.size for _, _, v in entries), self.dtype)
        self.buffer_names: list[str] = []
        offset = 0
        for i, key, value in entries:
            view = self.buffers[offset : offset + value.size].reshape(value.shape)
            view[...] = value
            self.layers[i].buffers[key] = view
            self.buffer_names.append(f"layers.{i}.{key}")
            offset += value.size

    @property
    def n_params(self) -> int:
        return int(self.theta.size)

    def named_parameters(self) -> Iterator[tuple[str, Array, Array]]:
        """(name, value view, gradient view) for each parameter tensor."""
        for name in self.param_names:
            i, key = name.split(".")[1:]
            layer = self.layers[int(i)]
            yield name, layer.params[key], layer.grads[key]

    def named_buffers(self) -> Iterator[tuple[str, Array]]:
        """(name, view) for each buffer (``layers.2.running_mean``)."""
        for name in self.buffer_names:
            i, key = name.split(".")[1:]
            yield name, self.layers[int(i)].buffers[key]

    def state_dict(self) -> dict[str, Array]:
        """Copies of every parameter and buffer by name (``layers.0.W``), as PyTorch's."""
        state = {name: value.copy() for name, value, _ in self.named_parameters()}
        state.update((name, value.copy()) for name, value in self.named_buffers())
        return state

    def load_state_dict(self, state: dict[str, Array]) -> None:
        names = set(self.param_names) | set(self.buffer_names)
        if set(state) != names:
            missing, extra = sorted(names - set(state)), sorted(set(state) - names)
            raise ValueError(f"parameters do not match: missing {missing}, unexpected {extra}")
        targets = [(n, v) for n, v, _ in self.named_parameters()] + list(self.named_buffers())
        for name, value in targets:
            if state[name].shape != value.shape:
                raise ValueError(f"{name}: shape {state[name].shape}, expected {value.shape}")
            value[...] = state[name]

    # ------------------------------------------------------------------ running

    def set_rng(self, rng: np.random.Generator | dict[str, np.random.Generator]) -> None:
        """The generators training-time randomness draws from: one for every layer, or one per
        seed stream, by each layer's ``rng_stream`` (``train``: dropout; ``sample``: the
        sampling of a variational autoencoder)."""
        for layer in self.layers:
            layer.rng = rng[layer.rng_stream] if isinstance(rng, dict) else rng

    @property
    def n_outputs(self) -> int:
        return len(self.outputs)

    @property
    def output_activations(self) -> list[str | None]:
        """The final activation of each output layer (None if it ends in none)."""
        fns = [self.layers[j].activation_fn for j in self.outputs]
        return [fn.name if fn is not None else None for fn in fns]

    @property
    def output_activation(self) -> str | None:
        return self.output_activations[0]

    def forward(self, X: Array, training: bool = False, logits: bool | list[bool] = False):
        """Outputs for a batch: an array, or a list of arrays for several outputs (arrays the
        model owns: copy them to keep them). With ``logits`` (for every output, or a list with
        a flag per output) an output layer's final activation is left out, for fused losses."""
        if self.chain:
            if isinstance(logits, list):
                (logits,) = logits
            last = len(self.layers) - 1
            for i, layer in enumerate(self.layers):
                if logits and i == last:
                    return layer.forward_logits(X, training)
                X = layer.forward(X, training)
            return X
        flags = self._logit_flags(logits)
        values: list[Array | None] = [None] * len(self.layers)
        for i, layer in enumerate(self.layers):
            x = self._gather(i, X, values)
            values[i] = (
                layer.forward_logits(x, training) if flags[i] else layer.forward(x, training)
            )
        outs = [values[j] for j in self.outputs]
        return outs[0] if len(outs) == 1 else outs

    def layer_outputs(self, X: Array, training: bool = False) -> list[Array]:
        """Every layer's output for a batch, in layer order (arrays the layers own: copy
        them to keep them past the next call)."""
        values: list[Array] = []
        for i, layer in enumerate(self.layers):
            values.append(layer.forward(self._gather(i, X, values), training))
        return values

    def backward(
        self, dY, logits: bool | list[bool] = False, need_input_grad: bool = False
    ) -> Array | None:
        """Backpropagate dL/d(output) (per output for several; None for an output without a
        loss) into ``self.grad``; with ``logits``, dL/d(logits) as in ``forward``. With
        ``need_input_grad`` also return dL/d(input), shape (batch, *input_shape), for saliency
        (an array the model may own: copy it to keep it); training leaves it off, so the first
        layer skips that product."""
        if self.chain:
            return self._backward_chain(dY, logits, need_input_grad)
        flags = self._logit_flags(logits)
        grads: list[Array | None] = [None] * len(self.layers)
        dX: Array | None = None  # dL/d(input), summed over the layers that read it
        for j, g in zip(self.outputs, dY if self.n_outputs > 1 else [dY], strict=True):
            if g is not None:
                self._accumulate(grads, j, g)
        self.grad[...] = 0.0  # layers no loss reaches keep a zero gradient
        for i in range(len(self.layers) - 1, -1, -1):
            g = grads[i]
            if g is None:
                continue
            srcs = self.sources[i]
            wanted = [need_input_grad or (s >= 0 and self.trained_upstream[s]) for s in srcs]
            need_dx = any(wanted)
            layer = self.layers[i]
            back = layer.backward_logits if flags[i] else layer.backward
            dx = back(g, need_dx)
            if not need_dx:
                continue
            if len(srcs) == 1:
                parts = [(srcs[0], dx)]
            elif self.joins[i] == "sum":  # each input gets its own copy: backward works in place
                parts = [(s, dx.copy()) for s, w in zip(srcs, wanted, strict=True) if w]
            else:
                parts, start = [], 0
                for s, w in zip(srcs, wanted, strict=True):
                    width = (self.input_shape if s < 0 else self.shapes[s])[-1]
                    if w:
                        parts.append((s, dx[..., start : start + width].copy()))
                    start += width
            for s, part in parts:
                if s >= 0:
                    self._accumulate(grads, s, part)
                elif need_input_grad:
                    dX = part.copy() if dX is None else dX + part
        if not need_input_grad:
            return None
        if dX is None:  # no loss reaches the input
            n = next(g.shape[0] for g in (dY if self.n_outputs > 1 else [dY]) if g is not None)
            dX = np.zeros((n, *self.input_shape), self.dtype)
        return dX

    def _backward_chain(
        self, dY: Array, logits: bool | list[bool], need_input_grad: bool
    ) -> Array | None:
        """``backward`` of a chain: each layer from the last, down to the first layer with
        parameters (or to the input, with ``need_input_grad``)."""
        if isinstance(logits, list):
            (logits,) = logits
        last = len(self.layers) - 1
        for i in range(last, -1, -1):
            layer = self.layers[i]
            need_dx = need_input_grad or (i > 0 and self.trained_upstream[i - 1])
            if logits and i == last:
                dY = layer.backward_logits(dY, need_dx=need_dx)
            else:
                dY = layer.backward(dY, need_dx=need_dx)
            if not need_dx:  # no layer below has parameters
                break
        return dY if need_input_grad else None

    def _logit_flags(self, logits: bool | list[bool]) -> list[bool]:
        flags = [False] * len(self.layers)
        per_output = logits if isinstance(logits, list) else [bool(logits)] * self.n_outputs
        for j, flag in zip(self.outputs, per_output, strict=True):
            flags[j] = flag
        return flags

    def _gather(self, i: int, X: Array, values: list) -> Array:
        srcs = self.sources[i]
        if len(srcs) == 1:
            return X if srcs[0] < 0 else values[srcs[0]]
        parts = [X if s < 0 else values[s] for s in srcs]
        if self.joins[i] == "sum":
            shape = parts[0].shape
        else:
            shape = (*parts[0].shape[:-1], sum(p.shape[-1] for p in parts))
        key = (i, shape)
        out = self._join_bufs.get(key)
        if out is None:
            out = self._join_bufs[key] = np.empty(shape, self.dtype)
        if self.joins[i] == "sum":
            np.add(parts[0], parts[1], out=out)
            for p in parts[2:]:
                out += p
        else:
            np.concatenate(parts, axis=-1, out=out)
        return out

    @staticmethod
    def _accumulate(grads: list, i: int, g: Array) -> None:
        if i < 0:
            return
        grads[i] = g if grads[i] is None else grads[i] + g

    def predict(self, X: Array, batch_size: int = PREDICT_BATCH):
        """Evaluation-mode outputs for any number of samples, as new arrays (a list of arrays
        for a model with several outputs)."""
        X = np.asarray(X, dtype=self.dtype)
        outs = [np.empty((X.shape[0], *s), self.dtype) for s in self.output_shapes]
        for start in range(0, X.shape[0], batch_size):
            stop = start + batch_size
            got = self.forward(X[start:stop])
            for out, g in zip(outs, got if self.n_outputs > 1 else [got], strict=True):
                out[start:stop] = g
        return outs[0] if self.n_outputs == 1 else outs

    def summary(self) -> str:
        lines = []
        for i, layer in enumerate(self.layers):
            n = sum(p.size for p in layer.params.values())
            kind = type(layer).__name__
            act = layer.activation_fn.name if layer.activation_fn is not None else ""
            lines.append(f"  [{i}] {self.names[i]:<12} {kind:<10} {act:<10} params {n:>9,d}")
        shapes = f"input {self.input_shape}, outputs {self.output_shapes}"
        lines.append(f"  {shapes}, {self.n_params:,d} parameters")
        return "\n".join(lines)
