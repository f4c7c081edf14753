"""How closely the exports of a trained run agree with ``nnlab predict`` (issue 14).

Given a run folder (a CNN with batchnorm, e.g. of configs/mnist_cnn_best.yaml), the script
exports it as the NumPy program, the ONNX model and the C header, runs each on the MNIST test
images (or the first ``--samples`` of them) and prints, per export, whether the outputs equal
``nnlab predict``'s bit for bit and their largest absolute difference, with the number of
predicted classes that differ.

Run: ``.venv/bin/python bench/cnn_exports.py RUN [--samples 10000]`` (onnx and onnxruntime
from the ``onnx`` extra; a C compiler for the header).
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

C_MAIN = r"""
#include <stdio.h>
#include "model.h"

int main(void)
{
    static REAL x[N_INPUTS];
    REAL out[N_OUTPUTS];
    for (;;) {
        for (int i = 0; i < N_INPUTS; i++)
            if (scanf(SCAN, &x[i]) != 1) return 0;
        predict(x, out);
        for (int j = 0; j < N_OUTPUTS; j++)
            printf(PRINT "%c", out[j], j + 1 < N_OUTPUTS ? ' ' : '\n');
    }
}
"""


def numpy_export(run: Path, X: np.ndarray, tmp: Path) -> np.ndarray:
    from nnlab.export import export

    (program,) = export(run, "numpy", tmp / "predict.py")
    boot = (
        "import runpy, sys; sys.modules['nnlab'] = None; sys.argv = sys.argv[1:]; "
        "runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    proc = subprocess.run(
        [sys.executable, "-I", "-c", boot, str(program), "x.npy", "-o", "np.npz"],
        cwd=tmp, capture_output=True, text=True,
    )  # fmt: skip
    if proc.returncode != 0:
        sys.exit(proc.stderr)
    with np.load(tmp / "np.npz") as z:
        return z["output"]


def onnx_export(run: Path, X: np.ndarray, tmp: Path) -> np.ndarray:
    import onnxruntime as ort

    from nnlab.export import export

    (path,) = export(run, "onnx", tmp / "m.onnx")
    session = ort.InferenceSession(str(path))
    dtype = np.float64 if "double" in session.get_inputs()[0].type else np.float32
    return session.run(None, {"input": X.astype(dtype)})[0]


def c_export(run: Path, X: np.ndarray, tmp: Path) -> np.ndarray:
    from nnlab.export import export

    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        sys.exit("no C compiler")
    export(run, "c", tmp / "model.h")
    head = '#define REAL float\n#define SCAN "%f"\n#define PRINT "%.9g"\n'
    (tmp / "main.c").write_text(head + C_MAIN)
    flags = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Wpedantic", "-Werror"]
    subprocess.run([cc, *flags, "main.c", "-o", "model", "-lm"], cwd=tmp, check=True)
    text = "\n".join(" ".join(repr(float(v)) for v in row) for row in X)
    proc = subprocess.run([str(tmp / "model")], input=text, capture_output=True, text=True)
    return np.loadtxt(proc.stdout.splitlines(), ndmin=2)


def mnist_test_images(n: int) -> np.ndarray:
    """The first ``n`` raw MNIST test images (pixels 0-255) as rows of 784 float64, read from
    ``$NNLAB_DATA_DIR`` or ../shared/data/mnist (nnlab predict scales them as the run did)."""
    folder = Path(os.environ.get("NNLAB_DATA_DIR", ROOT.parent / "shared" / "data" / "mnist"))
    for name in ("t10k-images-idx3-ubyte", "t10k-images-idx3-ubyte.gz"):
        path = folder / name
        if path.exists():
            raw = path.read_bytes()
            raw = gzip.decompress(raw) if name.endswith(".gz") else raw
            images = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 784)
            return images[:n].astype(np.float64)
    sys.exit(f"{folder}: no t10k-images-idx3-ubyte(.gz); set NNLAB_DATA_DIR")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--samples", type=int, default=10000, help="MNIST test images to use")
    args = ap.parse_args()
    from nnlab.predict import predict_file

    X = mnist_test_images(args.samples)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        np.save(tmp / "x.npy", X)
        predict_file(args.run, tmp / "x.npy", tmp / "ref.npz")
        with np.load(tmp / "ref.npz") as z:
            ref = z["output"]
        print(f"{args.run}: {len(X)} test images, outputs {ref.shape[1]} wide, {ref.dtype}")
        for name, fn in (("numpy", numpy_export), ("onnx", onnx_export), ("c", c_export)):
            got = fn(args.run, X, tmp)
            diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
            big = np.abs(ref) > 1e-3  # relative differences of outputs that are not ~0
            rel = np.max(diff[big] / np.abs(ref[big])) if big.any() else 0.0
            classes = int(np.sum(got.argmax(1) != ref.argmax(1)))
            print(
                f"{name:6} bit for bit: {np.array_equal(got, ref)!s:5}  largest |difference| "
                f"{diff.max():.3g}, relative (outputs > 1e-3) {rel:.3g}, "
                f"classes differing: {classes}"
            )


if __name__ == "__main__":
    main()
