"""``nnlab export --format c``: a dependency-free C99 header.

The header holds the weights as ``static const`` arrays (float, or double for a float64 model),
the input scaling, and ``predict(const float *x, float *out)`` for one sample of raw inputs
(a sequence is its (time, features) values row by row); ``N_INPUTS`` and ``N_OUTPUTS`` give the
sizes (``N_CLASSES`` and ``CLASS_NAMES`` for classifiers). A model with several outputs gets an
output array per output, in the model's order and named after its layer:
``predict(const float *x, float *out_cls, float *out_recon)``, with ``N_OUTPUTS_CLS``,
``N_OUTPUTS_RECON``. A one-unit classifier's decision threshold (the run's, see
``training.threshold``) is ``THRESHOLD`` (``THRESHOLD_CLS``): class 1 when the output is above
it. It needs only ``<math.h>`` (link with ``-lm``). Each operation mirrors nnlab's own, in the
same order and precision; recurrent layers loop over the time steps. An image is its (height,
width, channels) values row by row, as nnlab holds it: a convolution is a loop over output
pixels, kernel taps and channels; pooling, upsampling and the normalizations loop over pixels
and channels (batchnorm with the scale and shift of its running averages).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from string import Template
from typing import Any

import numpy as np

from nnlab import __version__
from nnlab.export.base import (
    ExportError,
    Value,
    Writer,
    concat_shape,
    network_text,
    outputs_text,
    recurrent_shapes,
)
from nnlab.export.c_images import CImages

Array = np.ndarray
PER_LINE = 6  # numbers per line in the weight arrays

# Activations as C functions of one value, or (softmax) of a vector. $T is the value type, $F the
# suffix of the <math.h> functions of that type ("f" for float), $L the suffix of its literals.
HELPERS = {
    "sigmoid": "static inline $T nnlab_sigmoid($T z) { return 1.0$L / (1.0$L + exp$F(-z)); }",
    "tanh": "static inline $T nnlab_tanh($T z) { return tanh$F(z); }",
    "relu": "static inline $T nnlab_relu($T z) { return z > 0.0$L ? z : 0.0$L; }",
    "step": "static inline $T nnlab_step($T z) { return z > 0.0$L ? 1.0$L : 0.0$L; }",
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
    "gate": (  # the sigmoid of nnlab's lstm gates
        "static inline $T nnlab_gate($T z) { return tanh$F(z * 0.5$L) * 0.5$L + 0.5$L; }"
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


class CWriter(CImages, Writer):
    format = "c"

    def __init__(self, model: Any, meta: dict, info: dict):
        super().__init__(model, meta, info)
        self.T = "float" if self.dtype == np.float32 else "double"
        self.suffix = "f" if self.dtype == np.float32 else ""
        self.arrays: list[str] = []  # definitions of the constant arrays
        self.body: list[str] = []  # the statements of predict()
        self.helpers: list[str] = []
        self.indent = "    "

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
        self.body.append(f"{self.indent}{line}")

    def open(self, line: str) -> None:
        """A line that opens a block ``{``: what follows is indented until ``close``."""
        self.emit(line)
        self.indent += "    "

    def close(self) -> None:
        self.indent = self.indent[:-4]
        self.emit("}")

    def helper(self, name: str) -> str:
        if name == "silu":
            self.helper("sigmoid")
        if name not in self.helpers:
            self.helpers.append(name)
        return f"nnlab_{name}"

    def buffer(self, name: str, shape: tuple[int, ...]) -> Value:
        y = Value(name, shape)
        self.emit(f"{self.T} {name}[{y.size}];")
        return y

    def copy(self, dst: str, src: str, n: int) -> None:
        self.emit(f"for (int j = 0; j < {n}; j++) {dst}[j] = {src}[j];")

    def matvec(self, y: str, x: str, W: str, n: int, m: int) -> None:
        """``y = x W`` for x of n values and W (n, m) row-major, summed as nnlab's matmul."""
        self.emit(f"for (int j = 0; j < {m}; j++) {y}[j] = 0.0{self.suffix};")
        self.open(f"for (int i = 0; i < {n}; i++) {{")
        self.emit(f"const {self.T} xi = {x}[i], *w = {W} + i * {m};")
        self.emit(f"for (int j = 0; j < {m}; j++) {y}[j] += xi * w[j];")
        self.close()

    def inputs(self) -> Value:
        return Value("x", tuple(self.model.input_shape))

    def scaling(self, x, shift, scale):
        h = self.buffer("h", x.shape)
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

    def join_concat(self, node, values):
        self.emit(f"/* {self.describe_join(node)} */")
        y = self.buffer(f"j{node.index}", concat_shape(values))
        width, rows = y.shape[-1], y.size // y.shape[-1]
        self.open(f"for (int r = 0; r < {rows}; r++) {{")  # a row: a time step, or the vector
        start = 0
        for v in values:
            k = v.shape[-1]
            at = f"r * {width} + {start} + j" if start else f"r * {width} + j"
            self.emit(f"for (int j = 0; j < {k}; j++) {y.name}[{at}] = {v.name}[r * {k} + j];")
            start += k
        self.close()
        return y

    def join_sum(self, node, values):
        self.emit(f"/* {self.describe_join(node)} */")
        y = self.buffer(f"j{node.index}", values[0].shape)
        total = " + ".join(f"{v.name}[j]" for v in values)
        self.emit(f"for (int j = 0; j < {y.size}; j++) {y.name}[j] = {total};")
        return y

    def layer_dense(self, node, x):
        layer, i = node.layer, node.index
        n, m = x.size, layer.units
        W = self.const(f"nnlab_W{i}", layer.params["W"], f"{node.where}: W ({n}, {m}), row-major")
        self.emit(f"/* {self.describe(node, x)} */")
        y = self.buffer(f"h{i}", (m,))
        self.matvec(y.name, x.name, W, n, m)
        if layer.use_bias:
            b = self.const(f"nnlab_b{i}", layer.params["b"], f"{node.where}: b ({m},)")
            self.emit(f"for (int j = 0; j < {m}; j++) {y.name}[j] += {b}[j];")
        return self.activation(node, y)

    def layer_activation(self, node, x):
        self.emit(f"/* {self.describe(node, x)} */")
        y = self.buffer(f"h{node.index}", x.shape)
        self.copy(y.name, x.name, x.size)
        return self.activation(node, y)

    def layer_dropout(self, node, x):
        self.emit(f"/* {self.describe(node, x)} */")
        return x

    def layer_flatten(self, node, x):
        self.emit(f"/* {self.describe(node, x)}: the same values, row by row */")
        return Value(x.name, (x.size,))

    def _recurrent(
        self, node, x: Value, gates: int, step: Callable[[str, str, int], None], cell: str = ""
    ) -> Value:
        """An rnn (1 gate) or lstm (4 gates) layer: in a block of its own, the state st = 0
        (and the cell, if named, = 0), then for each step ``a = (x_t W + b) + h_{t-1} U`` and
        ``step(a, st, units)``, which leaves the new state in st; the output is every step's
        state (return_sequences) or the last."""
        layer, i = node.layer, node.index
        steps, features, u, out = recurrent_shapes(node, x)
        g = gates * u
        W = self.const(f"nnlab_W{i}", layer.params["W"], f"{node.where}: W ({features}, {g})")
        U = self.const(f"nnlab_U{i}", layer.params["U"], f"{node.where}: U ({u}, {g})")
        b = self.const(f"nnlab_b{i}", layer.params["b"], f"{node.where}: b ({g},)")
        self.emit(f"/* {self.describe(node, x)} */")
        y = self.buffer(f"h{i}", out)
        a, r, st = f"a{i}", f"r{i}", f"st{i}"
        self.open("{")
        states = [st, cell] if cell else [st]
        self.emit(f"{self.T} {', '.join(f'{s}[{u}]' for s in states)}, {a}[{g}], {r}[{g}];")
        for s in states:
            self.emit(f"for (int j = 0; j < {u}; j++) {s}[j] = 0.0{self.suffix};")
        self.open(f"for (int t = 0; t < {steps}; t++) {{")
        self.emit(f"const {self.T} *xt = {x.name} + t * {features};")
        self.matvec(a, "xt", W, features, g)
        self.emit(f"for (int j = 0; j < {g}; j++) {a}[j] += {b}[j];")
        self.matvec(r, st, U, u, g)
        self.emit(f"for (int j = 0; j < {g}; j++) {a}[j] += {r}[j];")
        step(a, st, u)
        if len(out) > 1:
            self.emit(f"for (int j = 0; j < {u}; j++) {y.name}[t * {u} + j] = {st}[j];")
        self.close()
        if len(out) == 1:
            self.copy(y.name, st, u)
        self.close()
        return y

    def layer_rnn(self, node, x):
        def step(a: str, st: str, u: int) -> None:  # h_t = act(a)
            self.activation(node, Value(a, (u,)))
            self.copy(st, a, u)

        return self._recurrent(node, x, 1, step)

    def layer_lstm(self, node, x):
        c = f"c{node.index}"

        def step(a: str, st: str, u: int) -> None:
            # gates i, f, o, g side by side; sigmoid(z) as tanh(z / 2) / 2 + 1/2, as nnlab
            gate, tanh = self.helper("gate"), self.helper("tanh")
            self.emit(f"for (int j = 0; j < {3 * u}; j++) {a}[j] = {gate}({a}[j]); /* i, f, o */")
            self.emit(f"for (int j = {3 * u}; j < {4 * u}; j++) {a}[j] = {tanh}({a}[j]); /* g */")
            self.open(f"for (int j = 0; j < {u}; j++) {{")
            self.emit(f"{c}[j] = {a}[{u} + j] * {c}[j] + {a}[j] * {a}[{3 * u} + j];")
            self.emit(f"{st}[j] = {a}[{2 * u} + j] * {tanh}({c}[j]);")
            self.close()

        return self._recurrent(node, x, 4, step, cell=c)

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

    def act_softmax(self, node, fn, x):  # over the last axis: each row of it
        k = x.shape[-1]
        if x.size == k:
            self.emit(f"{self.helper('softmax')}({x.name}, {k});")
        else:
            self.emit(f"for (int r = 0; r < {x.size // k}; r++)")
            self.emit(f"    {self.helper('softmax')}({x.name} + r * {k}, {k});")
        return x

    def _elementwise(self, node, fn, x):
        return self._apply(x, fn.name)

    act_sigmoid = act_tanh = act_relu = act_selu = act_softplus = act_silu = act_gelu = _elementwise
    act_step = _elementwise

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


def output_names(info: dict) -> list[tuple[dict, str, str]]:
    """(head, output argument, size macro) per output: ``out`` and ``N_OUTPUTS`` for a model
    with one, ``out_<name>`` and ``N_OUTPUTS_<NAME>`` (the layer's name, as a C identifier)
    for each of several."""
    if "heads" not in info:
        return [(info, "out", "N_OUTPUTS")]
    names, seen = [], {}
    for head in info["heads"]:
        ident = re.sub(r"[^A-Za-z0-9_]", "_", head["name"])
        if ident.upper() in seen:
            raise ExportError(
                f"the outputs {seen[ident.upper()]!r} and {head['name']!r} would have the same "
                f"names in C (N_OUTPUTS_{ident.upper()}); rename one of these layers"
            )
        seen[ident.upper()] = head["name"]
        names.append((head, f"out_{ident}", f"N_OUTPUTS_{ident.upper()}"))
    return names


def _defines(w: CWriter, info: dict, names: list) -> list[str]:
    """The sizes (and thresholds) as #defines; a classifier's CLASS_NAMES array into ``w``."""
    defines = [f"#define N_INPUTS {info['n_inputs']}"]
    defines += [f"#define {size} {head['n_outputs']}" for head, _, size in names]
    defines += [  # a one-unit classifier: class 1 when its output is above this
        f"#define {size.replace('N_OUTPUTS', 'THRESHOLD')} {w.number(head['threshold'])}"
        for head, _, size in names
        if head["threshold"] is not None
    ]
    classes = next((h["classes"] for h, _, _ in names if h["classes"] is not None), None)
    if classes is not None:
        defines.append(f"#define N_CLASSES {len(classes)}")
        labels = ", ".join(_c_string(c) for c in classes)
        w.arrays.insert(
            0, f"/* the class labels */\nstatic const char *const CLASS_NAMES[] = {{{labels}}};"
        )
    return defines


def _header_comment(model: Any, info: dict, names: list, filename: str, T: str) -> str:
    """The header's opening comment: what the model is and how to call it (" * " lines)."""
    args = ", ".join(arg for _, arg, _ in names)
    declared = ", ".join(f"{arg}[{size}]" for _, arg, size in names)
    what = "\n".join(
        f"{arg}: {outputs_text(h, f'{arg}[0] >', 'in CLASS_NAMES')}." for h, arg, _ in names
    )
    shape = tuple(model.input_shape)
    rows = f", a ({', '.join(map(str, shape))}) sequence row by row" if len(shape) > 1 else ""
    comment = f"""{filename}: the nnlab model '{info["name"]}' as dependency-free C99.

Generated by nnlab {__version__} (nnlab export --format c). The network:
  {network_text(model)}

  #include "{filename}"
  {T} x[N_INPUTS] = {{...}};   raw inputs, like the training data (scaled inside predict){rows}
  {T} {declared};
  predict(x, {args});
{what}

Needs only <math.h>: compile with -lm. Everything here is static: include it in one file."""
    comment = comment.replace("*/", "* /")  # names come from the user's files
    comment = "\n".join((" * " + line).rstrip() for line in comment.splitlines())
    return comment


def write(model: Any, meta: dict, info: dict, output: Path) -> dict[Path, str]:
    """The C header."""
    names = output_names(info)
    w = CWriter(model, meta, info)
    outs = w.walk()
    T = w.T
    guard = "NNLAB_" + re.sub(r"[^A-Za-z0-9_]", "_", output.name).upper()
    defines = _defines(w, info, names)
    comment = _header_comment(model, info, names, output.name, T)
    arrays = "\n\n".join(w.arrays)
    body = "\n".join(w.body)
    sizes = ", ".join(f"{arg}: {size}" for _, arg, size in names)
    params = ", ".join(f"{T} *{arg}" for _, arg, _ in names)
    copies = "\n".join(
        f"    for (int j = 0; j < {size}; j++) {arg}[j] = {v.name}[j];"
        for (_, arg, size), v in zip(names, outs, strict=True)
    )
    doc = "The outputs (N_OUTPUTS)" if len(names) == 1 else f"The outputs ({sizes})"
    text = f"""/*
{comment}
 */
#ifndef {guard}
#define {guard}

#include <math.h>

{chr(10).join(defines)}

{arrays}

{w.helper_code()}

/* {doc} of the model for one sample of raw inputs x (N_INPUTS). */
static inline void predict(const {T} *x, {params})
{{
{body}
{copies}
}}

#endif /* {guard} */
"""
    return {output: text}


__all__ = ["CWriter", "output_names", "write"]
