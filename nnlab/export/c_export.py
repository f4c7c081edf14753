"""``nnlab export --format c``: a dependency-free C99 header.

The header holds the weights as ``static const`` arrays (float, or double for a float64 model),
the input scaling, and ``predict(const float *x, float *out)`` for one sample of raw inputs;
``N_INPUTS`` and ``N_OUTPUTS`` give the sizes (``N_CLASSES`` and ``CLASS_NAMES`` for
classifiers). It needs only ``<math.h>`` (link with ``-lm``). Each operation mirrors nnlab's
own, in the same order and precision.
"""

from __future__ import annotations

import re
from pathlib import Path
from string import Template
from typing import Any

import numpy as np

from nnlab import __version__
from nnlab.export.base import Value, Writer, network_text

Array = np.ndarray
PER_LINE = 6  # numbers per line in the weight arrays

# Activations as C functions of one value, or (softmax) of a vector. $T is the value type, $F the
# suffix of the <math.h> functions of that type ("f" for float), $L the suffix of its literals.
HELPERS = {
    "sigmoid": "static inline $T nnlab_sigmoid($T z) { return 1.0$L / (1.0$L + exp$F(-z)); }",
    "tanh": "static inline $T nnlab_tanh($T z) { return tanh$F(z); }",
    "relu": "static inline $T nnlab_relu($T z) { return z > 0.0$L ? z : 0.0$L; }",
    "leaky_relu": (
        "static inline $T nnlab_leaky_relu($T z, $T alpha) { return z > 0.0$L ? z : z * alpha; }"
    ),
    "elu": (
        "static inline $T nnlab_elu($T z, $T alpha)\n"
        "{\n    return z > 0.0$L ? z : expm1$F(z) * alpha;\n}"
    ),
    "selu": (
        "static inline $T nnlab_selu($T z)\n{\n"
        "    return (z > 0.0$L ? z : expm1$F(z) * 1.6732632423543772$L) * 1.0507009873554805$L;\n}"
    ),
    "softplus": (
        "static inline $T nnlab_softplus($T z)\n{\n"
        "    return log1p$F(exp$F(-fabs$F(z))) + (z > 0.0$L ? z : 0.0$L);\n}"
    ),
    "silu": "static inline $T nnlab_silu($T z) { return nnlab_sigmoid(z) * z; }",
    "gelu": (
        "static inline $T nnlab_gelu($T z) /* tanh approximation */\n{\n"
        "    $T t = tanh$F((z * z * 0.044715$L + 1.0$L) * z * 0.7978845608028654$L);\n"
        "    return (t + 1.0$L) * z * 0.5$L;\n}"
    ),
    "softmax": (
        "static inline void nnlab_softmax($T *z, int n)\n{\n"
        "    $T top = z[0], sum = 0.0$L;\n"
        "    for (int i = 1; i < n; i++) top = z[i] > top ? z[i] : top;\n"
        "    for (int i = 0; i < n; i++) {\n"
        "        z[i] = exp$F(z[i] - top);\n"
        "        sum += z[i];\n"
        "    }\n"
        "    for (int i = 0; i < n; i++) z[i] /= sum;\n}"
    ),
}


class CWriter(Writer):
    format = "c"

    def __init__(self, model: Any, meta: dict, info: dict):
        super().__init__(model, meta, info)
        self.T = "float" if self.dtype == np.float32 else "double"
        self.suffix = "f" if self.dtype == np.float32 else ""
        self.arrays: list[str] = []  # definitions of the constant arrays
        self.body: list[str] = []  # the statements of predict()
        self.helpers: list[str] = []

    def number(self, x: float) -> str:
        """A literal that reads back to exactly ``x`` in the model's type."""
        return np.asarray(x, self.dtype).astype(str).item() + self.suffix

    def const(self, name: str, value: Array, what: str) -> str:
        flat = np.asarray(value, self.dtype).ravel()
        text = flat.astype(str)
        if self.suffix:
            text = np.char.add(text, self.suffix)
        rows = [", ".join(text[i : i + PER_LINE]) for i in range(0, flat.size, PER_LINE)]
        self.arrays.append(
            f"/* {what} */\nstatic const {self.T} {name}[{flat.size}] = {{\n    "
            + ",\n    ".join(rows)
            + "\n};"
        )
        return name

    def emit(self, line: str) -> None:
        self.body.append(f"    {line}")

    def helper(self, name: str) -> str:
        if name == "silu":
            self.helper("sigmoid")
        if name not in self.helpers:
            self.helpers.append(name)
        return f"nnlab_{name}"

    def buffer(self, name: str, size: int) -> Value:
        self.emit(f"{self.T} {name}[{size}];")
        return Value(name, size)

    def inputs(self) -> Value:
        return Value("x", self.info["n_inputs"])

    def scaling(self, x, shift, scale):
        h = self.buffer("h", x.size)
        s = self.const("nnlab_shift", shift, "input shift") + "[i]" if shift.ndim else None
        c = self.const("nnlab_scale", scale, "input scale") + "[i]" if scale.ndim else None
        expr = f"{x.name}[i]"
        if s is not None or shift.item() != 0:
            expr = f"({expr} - {s or self.number(shift.item())})"
        if c is not None or scale.item() != 1:
            expr = f"{expr} / {c or self.number(scale.item())}"
        self.emit("/* the input scaling of the training data */")
        self.emit(f"for (int i = 0; i < {x.size}; i++) h[i] = {expr};")
        return h

    def layer_dense(self, node, x):
        layer, i = node.layer, node.index
        n, m = x.size, layer.units
        W = self.const(f"nnlab_W{i}", layer.params["W"], f"{node.where}: W ({n}, {m}), row-major")
        self.emit(f"/* {self.describe(node, x)} */")
        y = self.buffer(f"h{i}", m)
        self.emit(f"for (int j = 0; j < {m}; j++) {y.name}[j] = 0.0{self.suffix};")
        self.emit(f"for (int i = 0; i < {n}; i++) {{")
        self.emit(f"    const {self.T} xi = {x.name}[i], *w = {W} + i * {m};")
        self.emit(f"    for (int j = 0; j < {m}; j++) {y.name}[j] += xi * w[j];")
        self.emit("}")
        if layer.use_bias:
            b = self.const(f"nnlab_b{i}", layer.params["b"], f"{node.where}: b ({m},)")
            self.emit(f"for (int j = 0; j < {m}; j++) {y.name}[j] += {b}[j];")
        return self.activation(node, y)

    def layer_activation(self, node, x):
        self.emit(f"/* {self.describe(node, x)} */")
        y = self.buffer(f"h{node.index}", x.size)
        self.emit(f"for (int j = 0; j < {x.size}; j++) {y.name}[j] = {x.name}[j];")
        return self.activation(node, y)

    def layer_dropout(self, node, x):
        self.emit(f"/* {self.describe(node, x)} */")
        return x

    def _apply(self, x: Value, name: str, *args: str) -> Value:
        call = ", ".join([f"{x.name}[j]", *args])
        self.emit(f"for (int j = 0; j < {x.size}; j++) {x.name}[j] = {self.helper(name)}({call});")
        return x

    def act_linear(self, node, fn, x):
        return x

    def act_leaky_relu(self, node, fn, x):
        return self._apply(x, "leaky_relu", self.number(fn.alpha))

    def act_elu(self, node, fn, x):
        return self._apply(x, "elu", self.number(fn.alpha))

    def act_softmax(self, node, fn, x):
        self.emit(f"{self.helper('softmax')}({x.name}, {x.size});")
        return x

    def _elementwise(self, node, fn, x):
        return self._apply(x, fn.name)

    act_sigmoid = act_tanh = act_relu = act_selu = act_softplus = act_silu = act_gelu = _elementwise

    def helper_code(self) -> str:
        code = "\n\n".join(HELPERS[h] for h in self.helpers)
        return Template(code).substitute(T=self.T, F=self.suffix, L=self.suffix)


def _c_string(text: str) -> str:
    """A C string literal of ``text`` in UTF-8: printable ASCII as is (with \\, \\" and \\?
    escaped: no trigraphs), every other byte as a three-digit octal escape."""
    out = []
    for byte in text.encode("utf-8"):
        c = chr(byte)
        if c in '\\"?':
            out.append("\\" + c)
        elif 32 <= byte < 127:
            out.append(c)
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def write(model: Any, meta: dict, info: dict, output: Path) -> dict[Path, str]:
    """The C header."""
    w = CWriter(model, meta, info)
    out = w.walk()
    T = w.T
    guard = "NNLAB_" + re.sub(r"[^A-Za-z0-9_]", "_", output.name).upper()
    n, k, classes = info["n_inputs"], info["n_outputs"], info["classes"]
    defines = [f"#define N_INPUTS {n}", f"#define N_OUTPUTS {k}"]
    if classes is not None:
        defines.append(f"#define N_CLASSES {len(classes)}")
        names = ", ".join(_c_string(c) for c in classes)
        w.arrays.insert(
            0, f"/* the class labels */\nstatic const char *const CLASS_NAMES[] = {{{names}}};"
        )
    if classes is None:
        outputs = "the predicted values"
    elif k == 1:
        what = "the probability of" if info["probabilities"] else "a score for"
        outputs = (
            f"{what} class {classes[1]} (predicted when out[0] > {info['threshold']}, "
            f"else {classes[0]})"
        )
    else:
        kind = "probabilities" if info["probabilities"] else "scores"
        outputs = f"the {kind} of the classes in CLASS_NAMES (predicted: the largest)"
    comment = f"""{output.name}: the nnlab model '{info["name"]}' as dependency-free C99.

Generated by nnlab {__version__} (nnlab export --format c). The network:
  {network_text(model)}

  #include "{output.name}"
  {T} x[N_INPUTS] = {{...}};   raw inputs, like the training data (scaled inside predict)
  {T} out[N_OUTPUTS];
  predict(x, out);
out: {outputs}.

Needs only <math.h>: compile with -lm. Everything here is static: include it in one file."""
    comment = comment.replace("*/", "* /")  # names come from the user's files
    comment = "\n".join((" * " + line).rstrip() for line in comment.splitlines())
    arrays = "\n\n".join(w.arrays)
    body = "\n".join(w.body)
    text = f"""/*
{comment}
 */
#ifndef {guard}
#define {guard}

#include <math.h>

{chr(10).join(defines)}

{arrays}

{w.helper_code()}

/* The outputs (N_OUTPUTS) of the model for one sample of raw inputs x (N_INPUTS). */
static inline void predict(const {T} *x, {T} *out)
{{
{body}
    for (int j = 0; j < N_OUTPUTS; j++) out[j] = {out.name}[j];
}}

#endif /* {guard} */
"""
    return {output: text}


__all__ = ["CWriter", "write"]
