"""Export a trained model as a program that runs without nnlab.

``export(run, fmt, output)`` writes one of the ``FORMATS``: ``numpy`` (a single Python file that
needs only NumPy), ``onnx`` (a standard ONNX model; needs the ``onnx`` package) and ``c`` (a
dependency-free C header). Each exporter module has ``write(model, meta, info, output, **options)
-> {path: content}``; this module checks the request, loads the run and writes the files
atomically. Importing this package is cheap (the command line lists the formats from it).
"""

from __future__ import annotations

import importlib
from pathlib import Path

from nnlab.errors import NnlabError


class _Format:
    def __init__(self, module: str, suffix: str, default: str, options: tuple[str, ...] = ()):
        self.module = module
        self.suffix = suffix
        self.default = default  # the output file when none is given
        self.options = options


FORMATS = {
    "numpy": _Format("numpy_export", ".py", "predict.py", options=("weights",)),
    "onnx": _Format("onnx_export", ".onnx", "model.onnx"),
    "c": _Format("c_export", ".h", "model.h"),
}


def format_of(fmt: str | None, output: str | Path | None) -> str:
    """The format asked for, or the one the output file's suffix names (default: numpy)."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise _error(f"unknown export format {fmt!r}. Allowed: {', '.join(FORMATS)}")
        return fmt
    if output is None:
        return "numpy"
    suffix = Path(output).suffix.lower()
    for name, f in FORMATS.items():
        if suffix == f.suffix:
            return name
    known = ", ".join(f"{f.suffix} ({name})" for name, f in FORMATS.items())
    raise _error(f"{output}: cannot tell the format from the suffix; give --format ({known})")


def _error(message: str) -> NnlabError:
    from nnlab.export.base import ExportError

    return ExportError(message)


def export(
    run: str | Path, fmt: str | None = None, output: str | Path | None = None, **options
) -> list[Path]:
    """Export the model of a run folder (or a model.npz) to ``output``; returns the files
    written (a numpy export with ``weights="npz"`` writes the weights beside the program)."""
    from nnlab.export.base import check_finite
    from nnlab.files import atomic_write
    from nnlab.nn.graph import model_info
    from nnlab.runs import load_model

    fmt = format_of(fmt, output)
    spec = FORMATS[fmt]
    unknown = sorted(k for k, v in options.items() if v is not None and k not in spec.options)
    if unknown:
        raise _error(f"option {unknown[0]!r} does not apply to the {fmt} format")
    options = {k: v for k, v in options.items() if v is not None}
    path = Path(output if output is not None else spec.default)
    if not path.parent.is_dir():
        raise _error(f"{path}: the folder {path.parent} does not exist")
    if path.is_dir():
        raise _error(f"{path}: is a folder; give a file name such as {spec.default}")
    model, meta = load_model(run)
    check_finite(model)
    info = model_info(model, meta)
    module = importlib.import_module(f"nnlab.export.{spec.module}")
    files = module.write(model, meta, info, path, **options)
    for file, content in files.items():
        try:
            atomic_write(file, content)
        except OSError as e:
            raise _error(f"{file}: cannot write the file ({e.strerror or e})") from None
    return list(files)


__all__ = ["FORMATS", "export", "format_of"]
