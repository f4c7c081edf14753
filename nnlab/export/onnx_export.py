"""``nnlab export --format onnx``: a standard ONNX model (needs the ``onnx`` package).

The graph takes ``input`` (N, n_inputs) raw inputs, like the training data (the input scaling
is its first two nodes), and gives ``output`` (N, n_outputs); a classifier also gives ``class``
(N,), the index of the predicted class in the ``classes`` metadata. It uses the default ONNX
domain at opset ``OPSET`` (17: run by onnxruntime 1.12 and later) and IR version ``IR_VERSION``:
dense layers are MatMul and Add; activations are ONNX operators, silu and gelu (tanh
approximation) are composed from them (and, for float64 models, elu, selu and softplus, which
onnxruntime implements for float only); dropout, the identity at inference, adds no node.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from nnlab import __version__
from nnlab.export.base import ExportError, Value, Writer, network_text
from nnlab.nn.activations import GELU, SELU

OPSET = 17
IR_VERSION = 8  # the IR version of opset 17 (onnx 1.12)


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ExportError(
            "the onnx format needs the onnx package: pip install 'nnlab[onnx]' "
            "(or pip install onnx)"
        ) from None
    return onnx


class OnnxWriter(Writer):
    format = "onnx"

    def __init__(self, model: Any, meta: dict, info: dict):
        super().__init__(model, meta, info)
        self.onnx = _onnx()
        self.nodes: list = []
        self.initializers: list = []
        self._names: set[str] = set()

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

    def op(self, op_type: str, inputs: list[str], out: str, **attrs) -> str:
        out = self.name(out)
        self.nodes.append(self.onnx.helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def inputs(self) -> Value:
        self._names.add("input")
        return Value("input", self.info["n_inputs"])

    def scaling(self, x, shift, scale):
        name = x.name
        if shift.any():
            name = self.op("Sub", [name, self.const("input_shift", shift)], "scaling.sub")
        if (scale != 1).any():
            name = self.op("Div", [name, self.const("input_scale", scale)], "scaling.div")
        return Value(name, x.size)

    def layer_dense(self, node, x):
        layer, p = node.layer, f"layers.{node.index}"
        y = self.op("MatMul", [x.name, self.const(f"{p}.W", layer.params["W"])], f"{p}.matmul")
        if layer.use_bias:
            y = self.op("Add", [y, self.const(f"{p}.b", layer.params["b"])], f"{p}.add")
        return self.activation(node, Value(y, layer.units))

    def _unary(self, node, x: Value, op_type: str, **attrs) -> Value:
        fn = node.layer.activation_fn.name
        return Value(self.op(op_type, [x.name], f"layers.{node.index}.{fn}", **attrs), x.size)

    def act_linear(self, node, fn, x):
        return x

    def act_sigmoid(self, node, fn, x):
        return self._unary(node, x, "Sigmoid")

    def act_tanh(self, node, fn, x):
        return self._unary(node, x, "Tanh")

    def act_relu(self, node, fn, x):
        return self._unary(node, x, "Relu")

    def act_leaky_relu(self, node, fn, x):
        return self._unary(node, x, "LeakyRelu", alpha=float(fn.alpha))

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
        return Value(self.op("Mul", [e.name, self.const(f"{p}.scale", SELU.scale)], p), x.size)

    def _elu(self, p: str, x: Value, alpha: float) -> Value:
        """x if x > 0 else alpha (exp(x) - 1), from Greater, Min, Exp, Sub, Mul and Where."""
        zero = self.const(f"{p}.zero", 0.0)
        e = self.op("Exp", [self.op("Min", [x.name, zero], f"{p}.min")], f"{p}.exp")
        e = self.op("Sub", [e, self.const(f"{p}.one", 1.0)], f"{p}.expm1")
        e = self.op("Mul", [e, self.const(f"{p}.alpha", alpha)], f"{p}.neg")
        positive = self.op("Greater", [x.name, zero], f"{p}.positive")
        return Value(self.op("Where", [positive, x.name, e], p), x.size)

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
        return Value(self.op("Add", [t, relu], p), x.size)

    def act_softmax(self, node, fn, x):
        return self._unary(node, x, "Softmax", axis=-1)

    def act_silu(self, node, fn, x):
        p = f"layers.{node.index}.silu"
        s = self.op("Sigmoid", [x.name], f"{p}.sigmoid")
        return Value(self.op("Mul", [s, x.name], p), x.size)

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
        return Value(self.op("Mul", [t, self.const(f"{p}.half", 0.5)], p), x.size)

    def classes(self, out: str) -> str:
        """The predicted class index (N,) from the output (N, n_outputs)."""
        if self.info["n_outputs"] > 1:
            return self.op("ArgMax", [out], "class", axis=1, keepdims=0)
        above = self.op("Greater", [out, self.const("threshold", self.info["threshold"])], "above")
        flat = self.op("Reshape", [above, self.const_int("flat_shape", [-1])], "above_flat")
        return self.op("Cast", [flat], "class", to=self.onnx.TensorProto.INT64)

    def const_int(self, name: str, value: list[int]) -> str:
        name = self.name(name)
        array = np.asarray(value, np.int64)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name


def build(model: Any, meta: dict, info: dict) -> Any:
    """The ONNX ModelProto of a model (checked with ``onnx.checker``)."""
    w = OnnxWriter(model, meta, info)
    onnx, helper = w.onnx, w.onnx.helper
    elem = helper.np_dtype_to_tensor_dtype(w.dtype)
    out = w.walk().name
    if out == "input" or out in {i.name for i in w.initializers}:
        out = w.op("Identity", [out], "output")
    else:  # rename the last node's output
        last = next(n for n in reversed(w.nodes) if out in n.output)
        last.output[list(last.output).index(out)] = "output"
        last.name = "output"
        out = "output"
    outputs = [helper.make_tensor_value_info(out, elem, ["N", info["n_outputs"]])]
    if info["task"] == "classification":
        cls = w.classes(out)
        outputs.append(helper.make_tensor_value_info(cls, onnx.TensorProto.INT64, ["N"]))
    graph = helper.make_graph(
        w.nodes,
        f"nnlab {info['name']}",
        [helper.make_tensor_value_info("input", elem, ["N", info["n_inputs"]])],
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
    meta_props = {"nnlab_run": info["name"], "task": info["task"]}
    if info["classes"] is not None:
        meta_props["classes"] = json.dumps(info["classes"])
    if info["threshold"] is not None:
        meta_props["threshold"] = repr(info["threshold"])
    helper.set_model_props(m, meta_props)
    onnx.checker.check_model(m, full_check=True)
    return m


def write(model: Any, meta: dict, info: dict, output: Path) -> dict[Path, bytes]:
    """The .onnx file."""
    return {output: build(model, meta, info).SerializeToString()}


__all__ = ["IR_VERSION", "OPSET", "OnnxWriter", "build", "write"]
