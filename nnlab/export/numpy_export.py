"""``nnlab export --format numpy``: one Python file that needs only NumPy.

The file has ``predict(X)`` (raw inputs in, the model's outputs out: the input scaling is inside;
a dict of outputs by name for a model with several), the weights (inlined as base64 of their
little-endian bytes, or in a .npz beside the file), and a command line that reads and writes
files like ``nnlab predict`` (it carries the code of ``nnlab.export.standalone``). Each operation
mirrors nnlab's own, in the same order and dtype, on batches of the same size
(``nnlab.nn.model.PREDICT_BATCH`` samples; convolutions a block of samples at a time, as
nnlab), so the outputs equal ``nnlab predict``'s bit for bit; recurrent layers are a loop over
the time steps. Images are (batch, height, width, channels), as in nnlab.
"""

from __future__ import annotations

import ast
import base64
import inspect
import io
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

from nnlab import __version__
from nnlab.export import standalone
from nnlab.export.base import (
    ExportError,
    Value,
    Writer,
    concat_shape,
    network_text,
    outputs_text,
    recurrent_shapes,
)
from nnlab.export.numpy_images import IMAGE_HELPERS, NumpyImages
from nnlab.nn.graph import head_names
from nnlab.nn.model import PREDICT_BATCH

Array = np.ndarray
WEIGHTS = ("inline", "npz")

# Helper functions of the activations that take more than one expression. Each computes what
# nnlab.nn.activations computes, with the same operations in the same order.
HELPERS = {
    "sigmoid": """
def _sigmoid(z):
    with np.errstate(over="ignore"):  # exp(-z) = inf for very negative z gives 0: right
        return 1.0 / (1.0 + np.exp(-z))
""",
    "elu": """
def _elu(z, alpha):
    return np.where(z > 0, z, np.expm1(np.minimum(z, 0.0)) * alpha)
""",
    "selu": """
def _selu(z):
    neg = np.expm1(np.minimum(z, 0.0)) * 1.6732632423543772
    return np.where(z > 0, z, neg) * 1.0507009873554805
""",
    "softplus": """
def _softplus(z):
    return np.log1p(np.exp(-np.abs(z))) + np.maximum(z, 0.0)
""",
    "gelu": """
def _gelu(z):  # tanh approximation
    t = np.tanh((z * z * 0.044715 + 1.0) * z * 0.7978845608028654)
    return (t + 1.0) * z * 0.5
""",
    "softmax": """
def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)
""",
    **IMAGE_HELPERS,
}


class NumpyWriter(NumpyImages, Writer):
    format = "numpy"

    def __init__(self, model: Any, meta: dict, info: dict):
        super().__init__(model, meta, info)
        self.arrays: dict[str, Array] = {}  # constant name -> array
        self.lines: list[str] = []  # the body of predict()
        self.helpers: list[str] = []
        self.indent = ""  # inside the loop of a recurrent layer: its body's indentation

    def const(self, name: str, value: Array) -> str:
        self.arrays[name] = np.ascontiguousarray(value, self.dtype)
        return name

    def emit(self, line: str) -> None:
        self.lines.append(self.indent + line)

    def helper(self, name: str) -> str:
        if name not in self.helpers:
            self.helpers.append(name)
        return f"_{name}"

    def inputs(self) -> Value:
        return Value("x", tuple(self.model.input_shape))

    def scaling(self, x, shift, scale):
        expr = x.name
        if shift.ndim or shift.item() != 0:
            expr = f"({expr} - {self.const('SHIFT', shift) if shift.ndim else repr(shift.item())})"
        if scale.ndim or scale.item() != 1:
            expr = f"{expr} / {self.const('SCALE', scale) if scale.ndim else repr(scale.item())}"
        self.emit("# the input scaling of the training data")
        self.emit(f"h = {expr}")
        return Value("h", x.shape)

    def join_concat(self, node, values):
        y = Value(f"j{node.index}", concat_shape(values))
        self.emit(f"# {self.describe_join(node)}")
        self.emit(f"{y.name} = np.concatenate([{', '.join(v.name for v in values)}], axis=-1)")
        return y

    def join_sum(self, node, values):
        y = Value(f"j{node.index}", values[0].shape)
        self.emit(f"# {self.describe_join(node)}")
        self.emit(f"{y.name} = {' + '.join(v.name for v in values)}")
        return y

    def layer_dense(self, node, x):
        layer, i = node.layer, node.index
        y = Value(f"h{i}", (layer.units,))
        expr = f"{x.name} @ {self.const(f'W{i}', layer.params['W'])}"
        if layer.use_bias:
            expr += f" + {self.const(f'b{i}', layer.params['b'])}"
        self.emit(f"# {self.describe(node, x)}")
        self.emit(f"{y.name} = {expr}")
        return self.activation(node, y)

    def layer_dropout(self, node, x):
        self.emit(f"# {self.describe(node, x)}")
        return x

    def layer_activation(self, node, x):
        self.emit(f"# {self.describe(node, x)}")
        y = Value(f"h{node.index}", x.shape)
        self.emit(f"{y.name} = {x.name}")  # a new name: other layers may read x
        return self.activation(node, y)

    def layer_flatten(self, node, x):
        self.emit(f"# {self.describe(node, x)}")
        if len(x.shape) == 1:
            return x
        y = Value(f"h{node.index}", (x.size,))
        self.emit(f"{y.name} = {x.name}.reshape({x.name}.shape[0], -1)")
        return y

    def _recurrent_inputs(self, node, x: Value, name: str, width: int) -> str:
        """``name = x W + b`` for every step at once, time-major (time, n, width)."""
        i = node.index
        steps, features = x.shape
        W, b = (
            self.const(f"W{i}", node.layer.params["W"]),
            self.const(f"b{i}", node.layer.params["b"]),
        )
        self.emit(f"# {self.describe(node, x)}")
        self.emit(
            f"{name} = ({x.name}.transpose(1, 0, 2).reshape(-1, {features}) @ {W})"
            f".reshape({steps}, -1, {width}) + {b}"
        )
        return name

    def _sequence_start(self, node, out: tuple[int, ...], first: str, h: str) -> str | None:
        """The states h = 0 and, for return_sequences, the array of every step's state."""
        self.emit(f"{h} = np.zeros(({first}.shape[1], {node.layer.units}), {first}.dtype)")
        if len(out) == 1:
            return None
        seq = f"y{node.index}"
        self.emit(f"{seq} = np.empty(({first}.shape[1], {out[0]}, {out[1]}), {first}.dtype)")
        return seq

    def layer_rnn(self, node, x):
        # nnlab: Z = x W + b for every step, then h_t = act(Z[t] + h_{t-1} U)
        steps, _, units, out = recurrent_shapes(node, x)
        i = node.index
        z = self._recurrent_inputs(node, x, f"z{i}", units)
        h = f"h{i}"
        seq = self._sequence_start(node, out, z, h)
        U = self.const(f"U{i}", node.layer.params["U"])
        self.emit(f"for t in range({steps}):")
        self.indent = "    "
        self.emit(f"{h} = {z}[t] + {h} @ {U}")
        self.activation(node, Value(h, (units,)))
        if seq:
            self.emit(f"{seq}[:, t] = {h}")
        self.indent = ""
        return Value(seq or h, out)

    def layer_lstm(self, node, x):
        # nnlab: A = x W + b for every step; per step a = A[t] + h U, gates i, f, o, g side by
        # side; sigmoid(z) as tanh(z / 2) / 2 + 1/2; c = f c + i g; h = o tanh(c)
        steps, _, u, out = recurrent_shapes(node, x)
        i = node.index
        a = self._recurrent_inputs(node, x, f"a{i}", 4 * u)
        h, c, g, s = f"h{i}", f"c{i}", f"g{i}", f"s{i}"
        seq = self._sequence_start(node, out, a, h)
        self.emit(f"{c} = np.zeros_like({h})")
        U = self.const(f"U{i}", node.layer.params["U"])
        self.emit(f"for t in range({steps}):")
        self.indent = "    "
        self.emit(f"{g} = {a}[t] + {h} @ {U}  # the gates i, f, o, g")
        self.emit(f"{s} = np.tanh({g}[:, :{3 * u}] * 0.5) * 0.5 + 0.5  # sigmoid of i, f, o")
        self.emit(f"{c} = {s}[:, {u}:{2 * u}] * {c} + {s}[:, :{u}] * np.tanh({g}[:, {3 * u}:])")
        self.emit(f"{h} = {s}[:, {2 * u}:] * np.tanh({c})")
        if seq:
            self.emit(f"{seq}[:, t] = {h}")
        self.indent = ""
        return Value(seq or h, out)

    def _apply(self, x: Value, expr: str) -> Value:
        self.emit(f"{x.name} = {expr}")
        return x

    def act_linear(self, node, fn, x):
        return x

    def act_relu(self, node, fn, x):
        return self._apply(x, f"np.maximum({x.name}, 0.0)")

    def act_tanh(self, node, fn, x):
        return self._apply(x, f"np.tanh({x.name})")

    def act_leaky_relu(self, node, fn, x):
        return self._apply(x, f"np.where({x.name} > 0, {x.name}, {x.name} * {fn.alpha!r})")

    def act_elu(self, node, fn, x):
        return self._apply(x, f"{self.helper('elu')}({x.name}, {fn.alpha!r})")

    def act_step(self, node, fn, x):
        return self._apply(x, f"({x.name} > 0).astype({x.name}.dtype)")

    def act_silu(self, node, fn, x):
        return self._apply(x, f"{self.helper('sigmoid')}({x.name}) * {x.name}")

    def _helper_act(self, node, fn, x):
        return self._apply(x, f"{self.helper(fn.name)}({x.name})")

    act_sigmoid = act_selu = act_softplus = act_gelu = act_softmax = _helper_act


def _b64_lines(array: Array, indent: str) -> str:
    text = base64.b64encode(array.astype(array.dtype.newbyteorder("<")).tobytes()).decode()
    chunks = textwrap.wrap(text, 88) or [""]
    return "\n".join(f'{indent}"{c}"' for c in chunks)


def _standalone_code() -> tuple[list[str], str]:
    """The import lines and the code (functions) of ``nnlab.export.standalone``."""
    source = inspect.getsource(standalone)
    tree = ast.parse(source)
    imports, first = [], None
    for stmt in tree.body:
        if isinstance(stmt, ast.Import | ast.ImportFrom):
            if not (isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__"):
                imports.append(ast.get_source_segment(source, stmt))
        elif not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)):
            first = first or stmt
    start = min([first.lineno, *(d.lineno for d in getattr(first, "decorator_list", []))])
    return imports, "\n".join(source.splitlines()[start - 1 :]) + "\n"


def _usage(info: dict, path: Path, network: str, shapes: dict[str, str]) -> str:
    """The program's docstring (its text escaped: class names come from the user's data)."""
    n = info["n_inputs"]
    if "heads" in info:
        outputs = "a dict of its outputs by name: " + "; ".join(
            f"{h['name']!r}, {outputs_text(h)}" for h in info["heads"]
        )
        files = ".csv or .npz (an array per output)"
    else:
        outputs = outputs_text(info)
        files = ".csv, .npy or .npz"
    text = (
        f"Predictions of the nnlab model {info['name']!r} with NumPy only.\n\n"
        + textwrap.fill(
            f"Generated by nnlab {__version__} (nnlab export --format numpy). The network: "
            f"{network}. predict(X) takes raw inputs, like the training data (the input scaling "
            f"happens inside), and returns {outputs}.",
            96,
        )
        + f"\n\n    python {path.name} INPUT [-o OUTPUT]\n"
        f"        INPUT: a CSV (header row optional) or .npy file, a row of {n} inputs per sample\n"
        f"        OUTPUT: {files} (default: CSV on standard output)\n\n"
        f"    from {path.stem} import predict\n"
        f"    outputs = predict(X)  # X: {shapes['inputs']} -> {shapes['outputs']}\n"
    )
    return '"""' + text.replace("\\", "\\\\").replace('"""', '\\"""') + '"""\n'


def _shapes(model: Any, info: dict) -> dict[str, str]:
    """The shapes predict() takes and gives, in words."""
    n, shape = info["n_inputs"], tuple(model.input_shape)
    inputs = f"(n, {n}) or ({n},)"
    if len(shape) > 1:
        inputs = f"(n, {n}) or (n, {', '.join(map(str, shape))}), or one sample"
    if "heads" not in info:
        return {"inputs": inputs, "outputs": f"(n, {info['n_outputs']})"}
    heads = ", ".join(f"{h['name']!r}: (n, {h['n_outputs']})" for h in info["heads"])
    return {"inputs": inputs, "outputs": "{" + heads + "}"}


INPUT_CHECK = """\
    if x.shape[-1:] != ({n},) or x.ndim > 2:
        raise ValueError(f"predict takes rows of {n} inputs, got shape {{x.shape}}")
    x = x.reshape(-1, {n})"""

SEQUENCE_INPUT_CHECK = """\
    if not (x.shape[-1:] == ({n},) and x.ndim <= 2 or x.shape[-{k}:] == {shape} and x.ndim <= {k1}):
        raise ValueError(
            "predict takes rows of {n} inputs or arrays of shape {shape} per sample, "
            f"got shape {{x.shape}}"
        )
    x = x.reshape(-1, {dims})"""


def _input_check(model: Any, n_in: int) -> str:
    """The lines of predict() that check X and give it the model's input shape."""
    shape = tuple(model.input_shape)
    if len(shape) == 1:
        return INPUT_CHECK.format(n=n_in)
    dims = ", ".join(map(str, shape))
    return SEQUENCE_INPUT_CHECK.format(
        n=n_in, k=len(shape), k1=len(shape) + 1, shape=shape, dims=dims
    )


PROGRAM = """\
#!/usr/bin/env python3
{usage}
from __future__ import annotations

{imports}

INFO = {info}

# ---------------------------------------------------------------- the weights


{weights}


# ---------------------------------------------------------------- the network
{helpers}

def _network(x):
    \"\"\"The network on a batch of inputs x, shaped as the model takes them.\"\"\"
{body}
    return {out}


def predict(X):
    \"\"\"Outputs {out_shapes} for raw inputs X: {in_shapes}.\"\"\"
    x = np.asarray(X, dtype=np.{dtype})
{check}
    # batches of {batch} samples, as nnlab predict (the sums of the products depend on it)
    parts = [_network(x[i : i + {batch}]) for i in range(0, max(len(x), 1), {batch})]
    {join}


# ----------------------------------------------- reading and writing files, as nnlab predict


{io_code}

if __name__ == "__main__":
    sys.exit(main(predict, INFO))
"""


def _weights_code(w: NumpyWriter, weights: str, npz: Path) -> str:
    if weights == "npz":
        lines = [
            f"# the weights are in {npz.name}, beside this file",
            "with np.load(os.path.join(os.path.dirname(os.path.abspath(__file__)), "
            f"{npz.name!r})) as _z:",
        ]
        return "\n".join(lines + [f"    {name} = _z[{name!r}]" for name in w.arrays])
    parts = [
        "def _array(text, shape):\n"
        f'    return np.frombuffer(base64.b64decode(text), dtype="<{w.dtype.str[1:]}")'
        ".reshape(shape)"
    ]
    for name, a in w.arrays.items():
        parts.append(f"{name} = _array(\n{_b64_lines(a, '    ')},\n    {a.shape},\n)")
    return "\n\n\n".join(parts)


def write(
    model: Any, meta: dict, info: dict, output: Path, weights: str = "inline"
) -> dict[Path, str | bytes]:
    """The Python program (and, with ``weights="npz"``, its weights file)."""
    if weights not in WEIGHTS:
        raise ExportError(f"weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
    npz = output.with_suffix(".npz")
    if weights == "npz" and npz == output:
        raise ExportError(f"{output}: the program and its weights would be one file; name it .py")
    w = NumpyWriter(model, meta, info)
    outs = w.walk()
    if len(outs) == 1:
        out = outs[0].name
    else:
        pairs = zip(head_names(model), outs, strict=True)
        out = "{" + ", ".join(f"{name!r}: {v.name}" for name, v in pairs) + "}"
    shapes = _shapes(model, info)
    imports, io_code = _standalone_code()
    if weights == "inline":
        imports.append("import base64")
    numpy = [i for i in imports if "numpy" in i]
    program = PROGRAM.format(
        usage=_usage(info, output, network_text(model), shapes),
        imports="\n".join([*sorted(set(imports) - set(numpy)), "", *numpy]),
        info="{\n" + "".join(f"    {k!r}: {v!r},\n" for k, v in info.items()) + "}",
        weights=_weights_code(w, weights, npz),
        helpers="".join(f"\n\n{HELPERS[h].strip()}\n" for h in w.helpers),
        out_shapes=shapes["outputs"],
        in_shapes=shapes["inputs"],
        dtype=w.dtype.name,
        check=_input_check(model, info["n_inputs"]),
        body="\n".join(f"    {line}" for line in w.lines),
        out=out,
        batch=PREDICT_BATCH,
        join=(
            "return np.concatenate(parts)"
            if len(outs) == 1
            else "return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}"
        ),
        io_code=io_code,
    )
    files: dict[Path, str | bytes] = {output: program}
    if weights == "npz":
        buf = io.BytesIO()
        np.savez(buf, **w.arrays)
        files[npz] = buf.getvalue()
    return files


__all__ = ["NumpyWriter", "write"]
