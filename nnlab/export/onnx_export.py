"""``nnlab export --format onnx``: a standard ONNX model (needs the ``onnx`` package).

The graph takes ``input`` (N, n_inputs) raw inputs, like the training data (the input scaling
is its first two nodes), or (N, time, features) for a sequence model, and gives ``output``
(N, n_outputs); a classifier also gives ``class`` (N,), the index of the predicted class in the
``classes`` metadata. A model with several outputs gives one graph output per output, named
after its layer (``cls``, ``recon``), and ``<name>_class`` for each classifier among them.

It uses the default ONNX domain at opset ``OPSET`` (17: run by onnxruntime 1.12 and later) and
IR version ``IR_VERSION``: dense layers are MatMul and Add; activations are ONNX operators, silu
and gelu (tanh approximation) are composed from them (and, for float64 models, elu, selu and
softplus, which onnxruntime implements for float only, and leaky_relu, whose alpha is a float
attribute); dropout, the identity at inference, adds no node; joins are Concat (last axis) and
Add; flatten is Flatten. Images are NCHW in ONNX (nnlab's are NHWC): a value is transposed
where a layer that wants the other layout reads it, so a convolutional network transposes
once after its reshape and once before its flatten. conv2d is Conv, maxpool2d MaxPool,
avgpool2d AveragePool (count_include_pad 0), global_avgpool2d GlobalAveragePool, upsample2d
Resize (nearest), batchnorm BatchNormalization (the running averages), layernorm
LayerNormalization (last axis), reshape Reshape; for float64 models, whose Conv, AveragePool,
GlobalAveragePool and Resize onnxruntime implements for float only, a convolution is a sum over
the kernel's taps of Slice and Einsum, average pooling a sum of Slices divided by the count,
global pooling ReduceMean and upsampling Expand. Recurrent layers are the ``RNN`` and ``LSTM``
operators (gates reordered into ONNX's i, o, f, c; the time axis first, as they want it, by
Transpose), except
where onnxruntime could not run them: for float64 models (it has no double kernels) and for an
rnn activation the RNN operator does not offer (selu, silu, gelu, softmax), the recurrence is
unrolled over the time steps into MatMul, Add and the activation's operators, as nnlab computes
it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from nnlab import __version__
from nnlab.export.base import (
    ExportError,
    Value,
    Writer,
    concat_shape,
    network_text,
    recurrent_shapes,
)
from nnlab.export.onnx_images import OnnxImages
from nnlab.nn.activations import GELU, SELU, Activation

OPSET = 17
IR_VERSION = 8  # the IR version of opset 17 (onnx 1.12)
LSTM_GATES = [0, 2, 1, 3]  # nnlab's gates are i, f, o, g; ONNX's i, o, f, c


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ExportError(
            "the onnx format needs the onnx package: pip install 'nnlab[onnx]' "
            "(or pip install onnx)"
        ) from None
    return onnx


def rnn_activation(fn: Activation) -> dict | None:
    """The attributes of the ONNX RNN operator for an nnlab activation, or None if the
    operator does not offer it."""
    simple = {"tanh": "Tanh", "sigmoid": "Sigmoid", "relu": "Relu", "softplus": "Softplus"}
    if fn.name in simple:
        return {"activations": [simple[fn.name]]}
    if fn.name == "linear":
        return {"activations": ["Affine"], "activation_alpha": [1.0], "activation_beta": [0.0]}
    if fn.name in ("leaky_relu", "elu"):
        name = "LeakyRelu" if fn.name == "leaky_relu" else "Elu"
        return {"activations": [name], "activation_alpha": [float(fn.alpha)]}
    return None


class OnnxWriter(OnnxImages, Writer):
    format = "onnx"

    def __init__(self, model: Any, meta: dict, info: dict, reserved: tuple[str, ...] = ()):
        super().__init__(model, meta, info)
        self.onnx = _onnx()
        self.nodes: list = []
        self.initializers: list = []
        self._names: set[str] = {"input", *reserved}  # reserved: the graph's output names
        self.nchw: set[str] = set()  # the image tensors laid out NCHW (the others: NHWC)
        self._transposed: dict[str, str] = {}  # a tensor -> its copy in the other layout

    def name(self, base: str) -> str:
        """A tensor name not used yet."""
        name, n = base, 1
        while name in self._names:
            n += 1
            name = f"{base}_{n}"
        self._names.add(name)
        return name

    def const(self, name: str, value: Any) -> str:
        name = self.name(name)
        array = np.asarray(value, self.dtype)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def const_int(self, name: str, value: int | list[int]) -> str:
        name = self.name(name)
        array = np.asarray(value, np.int64)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def node(self, op_type: str, inputs: list[str], outputs: list[str], **attrs) -> list[str]:
        """A node with the given output names ("" for an optional output left out)."""
        name = next(o for o in outputs if o)
        self.nodes.append(self.onnx.helper.make_node(op_type, inputs, outputs, name=name, **attrs))
        return outputs

    def op(self, op_type: str, inputs: list[str], out: str, **attrs) -> str:
        return self.node(op_type, inputs, [self.name(out)], **attrs)[0]

    def inputs(self) -> Value:
        return Value("input", tuple(self.model.input_shape))

    def scaling(self, x, shift, scale):
        name = x.name
        if shift.any():
            name = self.op("Sub", [name, self.const("input_shift", shift)], "scaling.sub")
        if (scale != 1).any():
            name = self.op("Div", [name, self.const("input_scale", scale)], "scaling.div")
        return Value(name, x.shape)

    def join_concat(self, node, values):
        names = [v.name for v in values]
        y = self.op("Concat", names, f"layers.{node.index}.concat", axis=-1)
        return Value(y, concat_shape(values))

    def join_sum(self, node, values):
        y = values[0].name
        for v in values[1:]:  # pairwise, left to right, as nnlab adds them
            y = self.op("Add", [y, v.name], f"layers.{node.index}.sum")
        return Value(y, values[0].shape)

    def layer_dense(self, node, x):
        layer, p = node.layer, f"layers.{node.index}"
        y = self.op("MatMul", [x.name, self.const(f"{p}.W", layer.params["W"])], f"{p}.matmul")
        if layer.use_bias:
            y = self.op("Add", [y, self.const(f"{p}.b", layer.params["b"])], f"{p}.add")
        return self.activation(node, Value(y, (layer.units,)))

    def layer_flatten(self, node, x):
        if len(x.shape) == 1:
            return x
        return Value(
            self.op("Flatten", [x.name], f"layers.{node.index}.flatten", axis=1), (x.size,)
        )

    # ---------------------------------------------------------------- recurrent layers

    def layer_rnn(self, node, x):
        layer = node.layer
        attrs = rnn_activation(layer.activation_fn) if self.dtype == np.float32 else None
        if attrs is None:
            return self._unrolled(node, x)
        b = np.concatenate([layer.params["b"], np.zeros_like(layer.params["b"])])
        return self._recurrent_op(
            node, x, "RNN", layer.params["W"].T, layer.params["U"].T, b, **attrs
        )

    def layer_lstm(self, node, x):
        if self.dtype != np.float32:
            return self._unrolled(node, x)
        p, u = node.layer.params, node.layer.units

        def onnx_order(a: np.ndarray) -> np.ndarray:  # (rows, 4u) -> (4u, rows), i, o, f, c
            return a.reshape(a.shape[0], 4, u)[:, LSTM_GATES].reshape(a.shape[0], 4 * u).T

        b = p["b"].reshape(4, u)[LSTM_GATES].reshape(4 * u)
        b = np.concatenate([b, np.zeros_like(b)])  # W-bias, then R-bias = 0
        return self._recurrent_op(node, x, "LSTM", onnx_order(p["W"]), onnx_order(p["U"]), b)

    def _recurrent_op(self, node, x, op_type, W, R, B, **attrs) -> Value:
        """The RNN or LSTM operator on (N, time, features): W (gates * u, features), R (gates *
        u, u) and B (2 * gates * u) of its one direction."""
        p = f"layers.{node.index}"
        _, _, u, out = recurrent_shapes(node, x)
        xt = self.op("Transpose", [x.name], f"{p}.time_major", perm=[1, 0, 2])  # (T, N, F)
        weights = [self.const(f"{p}.{k}", a[None]) for k, a in (("W", W), ("R", R), ("B", B))]
        op = op_type.lower()
        if len(out) == 1:  # Y_h (1, N, u): the last state
            _, last = self.node(
                op_type, [xt, *weights], ["", self.name(f"{p}.{op}.h")], hidden_size=u, **attrs
            )
            y = self.op("Squeeze", [last, self.const_int(f"{p}.axes", [0])], f"{p}.{op}.last")
            return Value(y, out)
        (seq,) = self.node(
            op_type, [xt, *weights], [self.name(f"{p}.{op}.y")], hidden_size=u, **attrs
        )
        # Y (T, 1, N, u) -> (N, T, u)
        y = self.op("Squeeze", [seq, self.const_int(f"{p}.axes", [1])], f"{p}.{op}.squeeze")
        return Value(self.op("Transpose", [y], f"{p}.{op}.states", perm=[1, 0, 2]), out)

    def _unrolled(self, node, x) -> Value:
        """An rnn or lstm layer as nnlab computes it: x W + b for every step at once, then a
        step at a time h_t = act(Z[t] + h_{t-1} U) (rnn), or the gates a = A[t] + h_{t-1} U,
        sigmoid(z) = tanh(z / 2) / 2 + 1/2, c_t = f c_{t-1} + i g, h_t = o tanh(c_t) (lstm)."""
        p, layer, lstm = f"layers.{node.index}", node.layer, node.kind == "lstm"
        steps, _, u, out = recurrent_shapes(node, x)
        z = self.op("MatMul", [x.name, self.const(f"{p}.W", layer.params["W"])], f"{p}.matmul")
        z = self.op("Add", [z, self.const(f"{p}.b", layer.params["b"])], f"{p}.inputs")
        U = self.const(f"{p}.U", layer.params["U"])
        h = c = self.const(f"{p}.zeros", np.zeros((1, u)))
        if lstm:
            half = self.const(f"{p}.half", 0.5)
            split_gates = self.const_int(f"{p}.split_gates", [3 * u, u])
            split_ifo = self.const_int(f"{p}.split_ifo", [u, u, u])
        states = []
        for t in range(steps):
            q = f"{p}.t{t}"
            zt = self.op("Gather", [z, self.const_int(f"{q}.index", t)], f"{q}.x", axis=1)
            a = self.op("Add", [zt, self.op("MatMul", [h, U], f"{q}.matmul")], f"{q}.a")
            if not lstm:
                h = self.activation(node, Value(a, (u,))).name
                states.append(h)
                continue
            sig, g = self.node(
                "Split", [a, split_gates], [self.name(f"{q}.ifo"), self.name(f"{q}.g")], axis=1
            )
            s = self.op("Tanh", [self.op("Mul", [sig, half], f"{q}.half")], f"{q}.tanh")
            s = self.op("Add", [self.op("Mul", [s, half], f"{q}.mul"), half], f"{q}.sigmoid")
            i, f, o = self.node(
                "Split", [s, split_ifo], [self.name(f"{q}.{k}") for k in "ifo"], axis=1
            )
            fc = self.op("Mul", [f, c], f"{q}.fc")
            ig = self.op("Mul", [i, self.op("Tanh", [g], f"{q}.tanh_g")], f"{q}.ig")
            c = self.op("Add", [fc, ig], f"{q}.c")
            h = self.op("Mul", [o, self.op("Tanh", [c], f"{q}.tanh_c")], f"{q}.h")
            states.append(h)
        if len(out) == 1:
            return Value(h, out)
        axes = self.const_int(f"{p}.axes", [1])
        each = [self.op("Unsqueeze", [st, axes], f"{p}.t{t}.step") for t, st in enumerate(states)]
        return Value(self.op("Concat", each, f"{p}.states", axis=1), out)  # (N, T, u)

    # ---------------------------------------------------------------- activations

    def _unary(self, node, x: Value, op_type: str, **attrs) -> Value:
        fn = node.layer.activation_fn.name
        return Value(self.op(op_type, [x.name], f"layers.{node.index}.{fn}", **attrs), x.shape)

    def act_linear(self, node, fn, x):
        return x

    def act_sigmoid(self, node, fn, x):
        return self._unary(node, x, "Sigmoid")

    def act_tanh(self, node, fn, x):
        return self._unary(node, x, "Tanh")

    def act_relu(self, node, fn, x):
        return self._unary(node, x, "Relu")

    def act_step(self, node, fn, x):
        p = f"layers.{node.index}.step"
        above = self.op("Greater", [x.name, self.const(f"{p}.zero", 0.0)], f"{p}.greater")
        to = self.onnx.helper.np_dtype_to_tensor_dtype(np.dtype(self.dtype))
        return Value(self.op("Cast", [above], p, to=to), x.shape)

    def act_leaky_relu(self, node, fn, x):
        if self.dtype == np.float32:
            return self._unary(node, x, "LeakyRelu", alpha=float(fn.alpha))
        # the operator's alpha is a float attribute: for float64, max(z, alpha z) with a double
        p = f"layers.{node.index}.leaky_relu"
        scaled = self.op("Mul", [x.name, self.const(f"{p}.alpha", fn.alpha)], f"{p}.mul")
        return Value(self.op("Max" if fn.alpha <= 1 else "Min", [x.name, scaled], p), x.shape)

    # onnxruntime implements Elu, Selu and Softplus for float only: for float64 models they are
    # composed from operators it has for double.

    def act_elu(self, node, fn, x):
        if self.dtype == np.float32:
            return self._unary(node, x, "Elu", alpha=float(fn.alpha))
        return self._elu(f"layers.{node.index}.elu", x, fn.alpha)

    def act_selu(self, node, fn, x):
        if self.dtype == np.float32:
            return self._unary(node, x, "Selu", alpha=SELU.alpha, gamma=SELU.scale)
        p = f"layers.{node.index}.selu"
        e = self._elu(f"{p}.elu", x, SELU.alpha)
        return Value(self.op("Mul", [e.name, self.const(f"{p}.scale", SELU.scale)], p), x.shape)

    def _elu(self, p: str, x: Value, alpha: float) -> Value:
        """x if x > 0 else alpha (exp(x) - 1), from Greater, Min, Exp, Sub, Mul and Where."""
        zero = self.const(f"{p}.zero", 0.0)
        e = self.op("Exp", [self.op("Min", [x.name, zero], f"{p}.min")], f"{p}.exp")
        e = self.op("Sub", [e, self.const(f"{p}.one", 1.0)], f"{p}.expm1")
        e = self.op("Mul", [e, self.const(f"{p}.alpha", alpha)], f"{p}.neg")
        positive = self.op("Greater", [x.name, zero], f"{p}.positive")
        return Value(self.op("Where", [positive, x.name, e], p), x.shape)

    def act_softplus(self, node, fn, x):
        if self.dtype == np.float32:
            return self._unary(node, x, "Softplus")
        p, z = f"layers.{node.index}.softplus", x.name
        t = self.op(
            "Exp", [self.op("Neg", [self.op("Abs", [z], f"{p}.abs")], f"{p}.neg")], f"{p}.exp"
        )
        t = self.op(
            "Log", [self.op("Add", [t, self.const(f"{p}.one", 1.0)], f"{p}.add")], f"{p}.log"
        )
        relu = self.op("Max", [z, self.const(f"{p}.zero", 0.0)], f"{p}.relu")
        return Value(self.op("Add", [t, relu], p), x.shape)

    def act_softmax(self, node, fn, x):  # over the channels: axis 1 of an NCHW image
        return self._unary(node, x, "Softmax", axis=1 if x.name in self.nchw else -1)

    def act_silu(self, node, fn, x):
        p = f"layers.{node.index}.silu"
        s = self.op("Sigmoid", [x.name], f"{p}.sigmoid")
        return Value(self.op("Mul", [s, x.name], p), x.shape)

    def act_gelu(self, node, fn, x):
        # 0.5 z (1 + tanh(c z (1 + 0.044715 z^2))), in the order nnlab computes it
        p, z = f"layers.{node.index}.gelu", x.name
        t = self.op("Mul", [z, z], f"{p}.square")
        t = self.op("Mul", [t, self.const(f"{p}.k", 0.044715)], f"{p}.mul_k")
        one = self.const(f"{p}.one", 1.0)
        t = self.op("Add", [t, one], f"{p}.add_one")
        t = self.op("Mul", [t, z], f"{p}.mul_z")
        t = self.op("Mul", [t, self.const(f"{p}.c", GELU._c)], f"{p}.mul_c")
        t = self.op("Tanh", [t], f"{p}.tanh")
        t = self.op("Add", [t, one], f"{p}.add_one")
        t = self.op("Mul", [t, z], f"{p}.mul_z")
        return Value(self.op("Mul", [t, self.const(f"{p}.half", 0.5)], p), x.shape)

    def classes(self, out: str, head: dict, name: str) -> str:
        """The predicted class index (N,), as the tensor ``name``, from the output ``out`` (N,
        n_outputs) of a classifier (``head``: its ``nnlab.nn.graph.model_info``)."""
        if head["n_outputs"] > 1:
            return self.node("ArgMax", [out], [name], axis=1, keepdims=0)[0]
        above = self.op("Greater", [out, self.const("threshold", head["threshold"])], "above")
        flat = self.op("Reshape", [above, self.const_int("flat_shape", [-1])], "above_flat")
        return self.node("Cast", [flat], [name], to=self.onnx.TensorProto.INT64)[0]

    def rename(self, value: str, name: str, renamed: dict[str, str]) -> str:
        """Make the tensor ``value`` the graph output ``name`` (a reserved name): the node that
        makes it makes it under that name, or, for the graph input, a weight or a tensor already
        renamed (``renamed``: old name -> new), an Identity node copies it."""
        if value in renamed:
            return self.node("Identity", [renamed[value]], [name])[0]
        producer = next((n for n in self.nodes if value in n.output), None)
        if producer is None:
            return self.node("Identity", [value], [name])[0]
        for n in self.nodes:
            for ports in (n.input, n.output):
                for k, port in enumerate(ports):
                    if port == value:
                        ports[k] = name
        producer.name = name
        renamed[value] = name
        return name


def output_names(info: dict) -> list[tuple[dict, str, str | None]]:
    """(head, output name, class output name or None) per output of the model: ``output`` and
    ``class`` for a model with one output, else the output layer's name and ``<name>_class``."""
    if "heads" not in info:
        cls = "class" if info["task"] == "classification" else None
        return [(info, "output", cls)]
    names = [
        (h, h["name"], f"{h['name']}_class" if h["task"] == "classification" else None)
        for h in info["heads"]
    ]
    taken: dict[str, str] = {}
    for h, out, cls in names:
        for n in (out, cls):
            if n is not None and n in taken:
                raise ExportError(
                    f"the onnx export would give two graph outputs the name {n!r} (the outputs "
                    f"{taken[n]!r} and {h['name']!r}); rename one of these layers"
                )
            taken[n] = h["name"]
    return names


def build(model: Any, meta: dict, info: dict) -> Any:
    """The ONNX ModelProto of a model (checked with ``onnx.checker``)."""
    names = output_names(info)
    reserved = tuple(n for _, out, cls in names for n in (out, cls) if n is not None)
    w = OnnxWriter(model, meta, info, reserved)
    onnx, helper = w.onnx, w.onnx.helper
    elem = helper.np_dtype_to_tensor_dtype(w.dtype)
    outputs, renamed = [], {}
    for value, (head, out, cls) in zip(w.walk(), names, strict=True):
        out = w.rename(value.name, out, renamed)
        outputs.append(helper.make_tensor_value_info(out, elem, ["N", head["n_outputs"]]))
        if cls is not None:
            cls = w.classes(out, head, cls)
            outputs.append(helper.make_tensor_value_info(cls, onnx.TensorProto.INT64, ["N"]))
    shape = ["N", *model.input_shape]
    graph = helper.make_graph(
        w.nodes,
        f"nnlab {info['name']}",
        [helper.make_tensor_value_info("input", elem, shape)],
        outputs,
        w.initializers,
    )
    doc = (
        f"nnlab model '{info['name']}': {network_text(model)}. The input is raw, like the "
        "training data: the input scaling is part of the graph."
    )
    m = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="nnlab",
        producer_version=__version__,
        doc_string=doc,
    )
    m.ir_version = IR_VERSION
    meta_props = {"nnlab_run": info["name"], "task": meta["task"]}
    heads = [h for h, _, _ in names]
    classes = next((h["classes"] for h in heads if h["classes"] is not None), None)
    if classes is not None:
        meta_props["classes"] = json.dumps(classes)
    if "heads" in info:
        meta_props["outputs"] = json.dumps(info["heads"])
    elif info["threshold"] is not None:
        meta_props["threshold"] = repr(info["threshold"])
    helper.set_model_props(m, meta_props)
    onnx.checker.check_model(m, full_check=True)
    return m


def write(model: Any, meta: dict, info: dict, output: Path) -> dict[Path, bytes]:
    """The .onnx file."""
    return {output: build(model, meta, info).SerializeToString()}


__all__ = ["IR_VERSION", "OPSET", "OnnxWriter", "build", "output_names", "write"]
