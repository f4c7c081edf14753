"""``nnlab export --format numpy``: one Python file that needs only NumPy.

The file has ``predict(X)`` (raw inputs in, the model's outputs out: the input scaling is inside),
the weights (inlined as base64 of their little-endian bytes, or in a .npz beside the file), and a
command line that reads and writes files like ``nnlab predict`` (it carries the code of
``nnlab.export.standalone``). Each operation mirrors nnlab's own, in the same order and dtype,
so the outputs match ``nnlab predict`` to rounding.
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
from nnlab.export.base import ExportError, Value, Writer, network_text

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
}


class NumpyWriter(Writer):
    format = "numpy"

    def __init__(self, model: Any, meta: dict, info: dict):
        super().__init__(model, meta, info)
        self.arrays: dict[str, Array] = {}  # constant name -> array
        self.lines: list[str] = []  # the body of predict()
        self.helpers: list[str] = []

    def const(self, name: str, value: Array) -> str:
        self.arrays[name] = np.ascontiguousarray(value, self.dtype)
        return name

    def emit(self, line: str) -> None:
        self.lines.append(line)

    def helper(self, name: str) -> str:
        if name not in self.helpers:
            self.helpers.append(name)
        return f"_{name}"

    def inputs(self) -> Value:
        return Value("x", self.info["n_inputs"])

    def scaling(self, x, shift, scale):
        expr = x.name
        if shift.ndim or shift.item() != 0:
            expr = f"({expr} - {self.const('SHIFT', shift) if shift.ndim else repr(shift.item())})"
        if scale.ndim or scale.item() != 1:
            expr = f"{expr} / {self.const('SCALE', scale) if scale.ndim else repr(scale.item())}"
        self.emit("# the input scaling of the training data")
        self.emit(f"h = {expr}")
        return Value("h", x.size)

    def layer_dense(self, node, x):
        layer, i = node.layer, node.index
        y = Value(f"h{i}", layer.units)
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
        return self.activation(node, x)

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


def _usage(info: dict, path: Path, network: str) -> str:
    """The program's docstring (its text escaped: class names come from the user's data)."""
    n, k = info["n_inputs"], info["n_outputs"]
    classes, thr = info["classes"], info["threshold"]
    if info["task"] != "classification":
        outputs = "the predicted values"
    elif k == 1:
        what = "the probability of" if info["probabilities"] else "a score for"
        outputs = f"{what} class {classes[1]} (predicted when above {thr}, else {classes[0]})"
    else:
        kind = "probabilities" if info["probabilities"] else "scores"
        outputs = f"the {kind} of the classes {', '.join(classes)} (predicted: the largest)"
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
        "        OUTPUT: .csv or .npy (default: CSV on standard output)\n\n"
        f"    from {path.stem} import predict\n"
        f"    outputs = predict(X)  # X: (n, {n}) or ({n},) -> (n, {k})\n"
    )
    return '"""' + text.replace("\\", "\\\\").replace('"""', '\\"""') + '"""\n'


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

def predict(X):
    \"\"\"Outputs (n, {n_out}) for raw inputs X: (n, {n_in}), or ({n_in},) for one sample.\"\"\"
    x = np.asarray(X, dtype=np.{dtype})
    if x.shape[-1:] != ({n_in},) or x.ndim > 2:
        raise ValueError(f"predict takes rows of {n_in} inputs, got shape {{x.shape}}")
    x = x.reshape(-1, {n_in})
{body}
    return {out}


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
    out = w.walk()
    imports, io_code = _standalone_code()
    if weights == "inline":
        imports.append("import base64")
    numpy = [i for i in imports if "numpy" in i]
    program = PROGRAM.format(
        usage=_usage(info, output, network_text(model)),
        imports="\n".join([*sorted(set(imports) - set(numpy)), "", *numpy]),
        info="{\n" + "".join(f"    {k!r}: {v!r},\n" for k, v in info.items()) + "}",
        weights=_weights_code(w, weights, npz),
        helpers="".join(f"\n\n{HELPERS[h].strip()}\n" for h in w.helpers),
        n_in=info["n_inputs"],
        n_out=info["n_outputs"],
        dtype=w.dtype.name,
        body="\n".join(f"    {line}" for line in w.lines),
        out=out.name,
        io_code=io_code,
    )
    files: dict[Path, str | bytes] = {output: program}
    if weights == "npz":
        buf = io.BytesIO()
        np.savez(buf, **w.arrays)
        files[npz] = buf.getvalue()
    return files


__all__ = ["NumpyWriter", "write"]
