"""The convolution layer, and the geometry of windows that the pooling layers share.

Images are (batch, height, width, channels) arrays (NHWC, as Keras and TensorFlow); a flat row
of pixels becomes an image with a ``reshape`` layer. Windows follow Keras: ``valid`` padding
keeps the windows inside the image, ``same`` pads with zeros (with -inf for max pooling, and
average pooling leaves the padding out of its count) so that the output has ceil(size / stride)
rows and columns, the odd padding row or column at the bottom and right.

A convolution is matrix products (im2col): the windows of a block of samples are copied,
through a strided view, into the rows of a (samples * out_h * out_w, kh * kw * channels) matrix
of columns, multiplied by the kernel reshaped to (kh * kw * channels, filters); the bias and
the activation follow on the block while it is in the cache. Backward makes each block's
columns again for the kernel's gradient, and gets the input's gradient from products of the
output gradient with the kernel's rows, added back where the windows read (col2im, a loop over
the kernel's rows and phases of output columns). The blocks run in pieces of samples on the
run's threads (``nnlab.nn.workers``). No loop runs over samples or pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Literal

import numpy as np
from numpy.lib.stride_tricks import as_strided

from nnlab.errors import ConfigError
from nnlab.nn import workers
from nnlab.nn.activations import ACTIVATIONS
from nnlab.nn.initializers import INITIALIZERS
from nnlab.nn.layers import LAYERS, Layer, Spec, product
from nnlab.schema import Doc, Interval, Ref, fmt

Array = np.ndarray
Padding = Literal["valid", "same"]
BLOCK_BYTES = 2 << 20  # the columns of a block of samples: about a core's L2 cache


def pair(value: int | list[int]) -> tuple[int, int]:
    """(height, width) of an option given as one number or a list of two."""
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def check_pairs(p: dict, path: str, *keys: str) -> None:
    """Options that are an integer >= 1 or a list of two (``kernel_size: [3, 5]``)."""
    for key in keys:
        v = p[key]
        if v is None:
            continue
        ok = v >= 1 if isinstance(v, int) else len(v) == 2 and all(x >= 1 for x in v)
        if not ok:
            raise ConfigError(
                f"expected an integer >= 1 or a list of two (height, width), got {fmt(v)}",
                f"{path}.{key}",
            )


def image_shape(kind: str, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(height, width, channels) of a layer's input, or a ConfigError saying how to get it."""
    if len(input_shape) == 3:
        return input_shape
    hint = "add a reshape layer before it ({type: reshape, target_shape: [height, width, 1]})"
    if len(input_shape) == 1:
        side = math.isqrt(input_shape[0])
        if side * side == input_shape[0]:
            hint = (
                f"add a reshape layer before it ({{type: reshape, target_shape: [{side}, {side}, "
                f"1]}} makes rows of {input_shape[0]} pixels {side}x{side} images)"
            )
    raise ConfigError(
        f"a {kind} layer takes images of shape (height, width, channels) per sample, but its "
        f"input has shape {input_shape}: {hint}"
    )


def window_geometry(
    size: int, k: int, stride: int, dilation: int, padding: str
) -> tuple[int, int, int]:
    """(output size, padding before, padding after) along one axis, as Keras and TensorFlow
    compute them."""
    span = (k - 1) * dilation + 1
    if padding == "same":
        out = -(-size // stride)
        total = max((out - 1) * stride + span - size, 0)
        return out, total // 2, total - total // 2
    return (size - span) // stride + 1, 0, 0


@dataclass(frozen=True)
class Windows:
    """Where the windows of a convolution or pooling layer fall on its input (one sample:
    H x W x C), and the strided views that read and write them."""

    H: int
    W: int
    C: int
    kh: int
    kw: int
    sh: int
    sw: int
    dh: int
    dw: int
    Ho: int
    Wo: int
    pads: tuple[int, int, int, int]  # top, bottom, left, right

    @classmethod
    def of(cls, kind: str, input_shape, kernel, strides, dilation, padding) -> Windows:
        H, W, C = image_shape(kind, input_shape)
        (kh, kw), (sh, sw), (dh, dw) = pair(kernel), pair(strides), pair(dilation)
        Ho, pt, pb = window_geometry(H, kh, sh, dh, padding)
        Wo, pl, pr = window_geometry(W, kw, sw, dw, padding)
        if Ho < 1 or Wo < 1:
            span = f"{(kh - 1) * dh + 1}x{(kw - 1) * dw + 1}"
            raise ConfigError(
                f"the {span} window (kernel with dilation) is larger than the {H}x{W} input "
                "with padding: valid; use a smaller kernel, or padding: same"
            )
        return cls(H, W, C, kh, kw, sh, sw, dh, dw, Ho, Wo, (pt, pb, pl, pr))

    @property
    def padded(self) -> bool:
        return any(self.pads)

    @property
    def padded_shape(self) -> tuple[int, int, int]:
        pt, pb, pl, pr = self.pads
        return self.H + pt + pb, self.W + pl + pr, self.C

    @property
    def offsets(self) -> list[tuple[int, int]]:
        return [(i, j) for i in range(self.kh) for j in range(self.kw)]

    def tiles(self, axis: int) -> bool:
        """Along rows (1) or columns (2), the windows cover the padded input exactly once."""
        k, s, n = (self.kh, self.sh, self.Ho) if axis == 1 else (self.kw, self.sw, self.Wo)
        d = self.dh if axis == 1 else self.dw
        return k == s and d == 1 and n * s == self.padded_shape[axis - 1]

    def pad(self, layer: Layer, X: Array, key: str, fill: float = 0.0) -> Array:
        """X inside a border of ``fill`` (X itself without padding); the bordered array is the
        layer's scratch buffer ``key``, whose border is written once."""
        if not self.padded:
            return X
        pt, _, pl, _ = self.pads
        Xp = layer._buf(key, (X.shape[0], *self.padded_shape), X.dtype, fill=fill)
        Xp[:, pt : pt + self.H, pl : pl + self.W, :] = X
        return Xp

    def interior(self, Xp: Array) -> Array:
        """The input's part of a padded array (a view)."""
        if not self.padded:
            return Xp
        pt, _, pl, _ = self.pads
        return Xp[:, pt : pt + self.H, pl : pl + self.W, ...]

    def along(self, A: Array, axis: int, i: int) -> Array:
        """The view of ``A`` (batch, rows, columns, ...) holding, along ``axis`` (1: rows, 2:
        columns), tap ``i`` of every window: index ``i * dilation + stride * o`` for each output
        position o."""
        s, d, n = (self.sh, self.dh, self.Ho) if axis == 1 else (self.sw, self.dw, self.Wo)
        start = i * d
        index = [slice(None)] * A.ndim
        index[axis] = slice(start, start + s * (n - 1) + 1, s)
        return A[tuple(index)]

    def at(self, Xp: Array, i: int, j: int) -> Array:
        """(batch, Ho, Wo, ...) view: the element at offset (i, j) of every window."""
        return self.along(self.along(Xp, 1, i), 2, j)

    def macs(self, batch: int, filters: int) -> int:
        """Multiply-adds of a convolution's product for ``batch`` samples."""
        return batch * self.Ho * self.Wo * self.kh * self.kw * self.C * filters

    # ---------------------------------------------------------------- im2col and back
    #
    # The columns of a block of samples have a row per output position and a column per
    # kernel tap and channel (kh * kw * C), stored row by row, each window's kw * C adjacent
    # values of a kernel row copied as one run from a strided view of the input; for a
    # one-channel input (MNIST's first layer) those runs would be kw numbers long, so they are
    # stored transposed instead, a copy per tap of whole image rows. The products read either
    # layout without a copy. A block holds ``BLOCK_BYTES`` of columns, so that the product
    # reads them from the cache, not from memory: made and multiplied a block at a time, the
    # forward product of MNIST's second layer runs 1.3-1.6x faster than one product over the
    # whole batch's columns; the kernel's gradient makes them again (as fast as keeping them,
    # and a batch's columns, 25x its input, are never held). OpenBLAS sums a row's products
    # in an order that depends on the number of rows, so the blocks are part of the numbers.

    def transposed(self) -> bool:
        return self.C == 1

    def block(self, itemsize: int) -> int:
        """Samples per block of columns."""
        per_sample = self.Ho * self.Wo * self.kh * self.kw * self.C * itemsize
        return max(1, BLOCK_BYTES // per_sample)

    def columns(self, layer: Layer, Xp: Array, key: str = "cols") -> Array:
        """The (samples * Ho * Wo, kh * kw * C) columns of a padded input's samples (a view
        of the layer's buffer ``key``)."""
        n, K = Xp.shape[0], self.kh * self.kw * self.C
        if self.transposed():
            cols = layer._buf(key, (self.kh, self.kw, n, self.Ho, self.Wo), Xp.dtype)
            X2 = Xp[..., 0]
            for i, j in self.offsets:
                np.copyto(cols[i, j], self.at(X2, i, j))
            return cols.reshape(K, -1).T
        cols = layer._buf(key, (n, self.Ho, self.Wo, self.kh, self.kw, self.C), Xp.dtype)
        s = Xp.strides
        windows = as_strided(
            Xp,
            cols.shape,
            (s[0], self.sh * s[1], self.sw * s[2], self.dh * s[1], self.dw * s[2], s[3]),
            writeable=False,
        )
        np.copyto(cols, windows)
        return cols.reshape(-1, K)

    def input_gradient(self, layer: Layer, dZ: Array, W: Array, dXp: Array, key: str) -> None:
        """Add dL/d(input) into the padded input gradient dXp (samples, Hp, Wp, C), from dZ
        (samples, Ho, Wo, F) and the kernel W (kh * kw * C, F): the columns' gradient dZ W^T,
        each tap's share added back where it was read (col2im). ``key`` names the buffers."""
        n, F = dZ.shape[0], dZ.shape[-1]
        if self.dw == 1 and not self.transposed():
            self._add_row_runs(layer, dXp, dZ, W, key)
            return
        dcols = layer._buf(f"dcols{key}", (n * self.Ho * self.Wo, W.shape[0]), dZ.dtype)
        product(dZ.reshape(-1, F), W.T, dcols)
        dcols = dcols.reshape(n, self.Ho, self.Wo, self.kh, self.kw, self.C)
        for i, j in self.offsets:
            self.at(dXp, i, j)[...] += dcols[:, :, :, i, j, :]

    def _add_row_runs(self, layer: Layer, dXp: Array, dZ: Array, W: Array, key: str) -> None:
        """col2im for adjacent taps across (dilation 1), without the whole columns' gradient.
        The windows of every m-th output column (m * sw >= kw) do not overlap, and the kw * C
        values of a window's kernel row are one run of the input row; so for each phase r of
        those columns and each kernel row i, one product (the phase's rows of dZ times kernel
        row i, a block that stays in the cache) gives runs that one add puts in place. That is
        m * kh products and adds (25 for a 5x5 kernel), about twice as fast on MNIST's second
        layer as one product into the whole (batch * Ho * Wo, kh * kw * C) matrix, which does
        not fit in the cache, and the adds from it."""
        n, F = dZ.shape[0], dZ.shape[-1]
        run, item = self.kw * self.C, dXp.itemsize
        m = -(-self.kw // self.sw)
        Wr = W.reshape(self.kh, run, F)  # kernel row i: (kw * C, F)
        for r in range(min(m, self.Wo)):
            count = len(range(r, self.Wo, m))
            dZr = layer._buf(f"dZr{key}", (n, self.Ho, count, F), dZ.dtype)
            np.copyto(dZr, dZ[:, :, r::m])
            part = layer._buf(f"part{key}", (n * self.Ho * count, run), dZ.dtype)
            for i in range(self.kh):
                product(dZr.reshape(-1, F), Wr[i].T, part)
                base = self.along(dXp, 1, i)[:, :, r * self.sw :]  # (n, Ho, ..., C)
                s = base.strides
                dest = as_strided(
                    base, (n, self.Ho, count, run), (s[0], s[1], m * self.sw * s[2], item)
                )
                dest += part.reshape(dest.shape)


@LAYERS.register("conv2d", aliases=("conv", "convolution2d"))
@dataclass(eq=False)
class Conv2D(Layer):
    """2-D convolution (cross-correlation, as Keras and PyTorch) of images (batch, height,
    width, channels): ``activation(sum over the window of x * W + b)`` with W of shape
    (kernel height, kernel width, input channels, filters), Keras' layout; the initializers'
    fan-in is kernel height * width * input channels, the fan-out that times filters / input
    channels, as in Keras and PyTorch."""

    filters: Annotated[int, Interval(ge=1), Doc("number of output channels (kernels)")]
    kernel_size: Annotated[int | list[int], Doc("the kernel's height and width: n, or [h, w]")]
    strides: Annotated[int | list[int], Doc("step between windows: n, or [down, across]")] = 1
    padding: Annotated[
        Padding, Doc("valid: windows inside the image; same: zero-padded to ceil(size / stride)")
    ] = "valid"
    dilation: Annotated[
        int | list[int],
        Doc("spacing between the kernel's taps (1: adjacent; Keras' dilation_rate)"),
    ] = 1
    activation: Annotated[Spec, Ref(ACTIVATIONS), Doc("activation function")] = "linear"
    initializer: Annotated[Spec, Ref(INITIALIZERS), Doc("initializer of W")] = "glorot_uniform"
    bias_initializer: Annotated[Spec, Ref(INITIALIZERS), Doc("initializer of b")] = "zeros"
    use_bias: Annotated[bool, Doc("add the bias b (one per filter)")] = True

    @staticmethod
    def __post_check__(p: dict, path: str) -> None:
        # strides and dilation together: PyTorch allows them, Keras refuses; the windows'
        # geometry is the same either way
        check_pairs(p, path, "kernel_size", "strides", "dilation")

    def __post_init__(self):
        self.no_decay = ("b",)
        self.activation_fn = ACTIVATIONS.build(self.activation)

    def build(self, input_shape, rng, dtype):
        g = self._g = Windows.of(
            "conv2d", input_shape, self.kernel_size, self.strides, self.dilation, self.padding
        )
        shape = (g.kh, g.kw, g.C, self.filters)
        self.params["W"] = INITIALIZERS.build(self.initializer)(shape, rng, dtype)
        if self.use_bias:
            self.params["b"] = INITIALIZERS.build(self.bias_initializer)(
                (self.filters,), rng, dtype
            )
        # a 1x1 kernel with stride 1 reads each pixel alone: the image is its own im2col
        self._pointwise = (g.kh, g.kw, g.sh, g.sw) == (1, 1, 1, 1) and not g.padded
        return (g.Ho, g.Wo, self.filters)

    def macs(self, batch: int) -> int:
        """Multiply-adds of the layer's largest product for ``batch`` samples (threads.py):
        a block of samples' (see ``Windows.convolve``)."""
        return self._g.macs(min(batch, self._block(self.params["W"].itemsize)), self.filters)

    def _kernel(self, key: str = "W") -> Array:
        """W (or its gradient) as the (kh * kw * C, filters) matrix of the product."""
        return (self.params if key == "W" else self.grads)["W"].reshape(-1, self.filters)

    def _block(self, itemsize: int) -> int:
        """Samples per block of columns (of the input itself for a 1x1 kernel)."""
        g = self._g
        if self._pointwise:
            return max(1, BLOCK_BYTES // (g.H * g.W * g.C * itemsize))
        return g.block(itemsize)

    def _pieces(self, n: int, itemsize: int, training: bool) -> tuple[int, list[tuple[int, int]]]:
        """(block, pieces): the samples of a batch cut into blocks and, in training, into
        pieces of whole blocks, one per thread of the run (``nnlab.nn.workers``, whose
        products are single-threaded). In evaluation one piece runs with the BLAS threads in
        force, as the exported NumPy program does: OpenBLAS' sums depend on its threads, and
        predictions equal the export's bit for bit."""
        block = self._block(itemsize)
        return block, workers.pieces(n, workers.count() if training else 1, block)

    def _columns(self, start: int, stop: int, key: str) -> Array:
        """The columns of samples start:stop of the cached (padded) input."""
        if self._pointwise:
            return self._Xp[start:stop].reshape(-1, self._g.C)
        return self._g.columns(self, self._Xp[start:stop], key)

    def forward_logits(self, X, training=False):
        return self._forward(X, training, activation=False)

    def forward(self, X, training=False):
        return self._forward(X, training, activation=True)

    def _forward(self, X: Array, training: bool, activation: bool) -> Array:
        """Z = x * W + b, and with ``activation`` A = activation(Z), a piece of samples per
        thread, each a block at a time: the columns of a block, their product, its bias, its
        activation, while they are in the cache."""
        g, n, F = self._g, X.shape[0], self.filters
        self._Xp = X if self._pointwise else g.pad(self, X, "Xp")
        Z = self._Z = self._buf("Z", (n, g.Ho, g.Wo, F), X.dtype)
        fn = self.activation_fn
        act = activation and fn.name != "linear"  # linear returns Z itself
        A = self._A = self._buf("A", Z.shape, Z.dtype) if act else Z
        W, rows = self._kernel(), g.Ho * g.Wo
        Z2 = Z.reshape(-1, F)
        block, pieces = self._pieces(n, X.dtype.itemsize, training)
        self._training = training

        def piece(k: int, a: int, b: int) -> None:
            for start in range(a, b, block):
                stop = min(start + block, b)
                Zb = Z2[start * rows : stop * rows]
                product(self._columns(start, stop, f"cols{k}"), W, Zb)
                if self.use_bias:
                    Zb += self.params["b"]
            if act:
                fn.forward(Z[a:b], A[a:b])

        workers.run([partial(piece, k, a, b) for k, (a, b) in enumerate(pieces)])
        return A

    def backward(self, dY, need_dx=True):
        return self._backward(dY, need_dx, activation=True)

    def backward_logits(self, dZ, need_dx=True):
        return self._backward(dZ, need_dx, activation=False)

    def _backward(self, dY: Array, need_dx: bool, activation: bool) -> Array | None:
        """The gradients of W and b (each thread's piece of samples summed, then the pieces
        in order) and, with ``need_dx``, dL/d(input), a piece of samples per thread."""
        g, n = self._g, dY.shape[0]
        block, pieces = self._pieces(n, dY.dtype.itemsize, self._training)
        dX = None
        if need_dx:
            shape = (n, g.H, g.W, g.C) if self._pointwise else (n, *g.padded_shape)
            dX = self._buf("dX", shape, dY.dtype)
        parts = workers.run(
            [
                partial(self._backward_piece, k, a, b, block, dY, activation, dX)
                for k, (a, b) in enumerate(pieces)
            ]
        )
        for dW, db in parts[1:]:  # the first piece wrote into the gradients themselves
            self._kernel("grad")[...] += dW
            if self.use_bias:
                self.grads["b"] += db
        if dX is None or self._pointwise:
            return dX
        return g.interior(dX)

    def _backward_piece(
        self, k: int, a: int, b: int, block: int, dY: Array, activation: bool, dX: Array | None
    ) -> tuple[Array, Array | None]:
        """Samples a:b of backward: their dZ, their part of the gradients of W (their
        columns made again, a block at a time) and b, and their input gradient in dX."""
        g, F, rows = self._g, self.filters, self._g.Ho * self._g.Wo
        dZ = dY[a:b]
        if activation:
            dZ = self.activation_fn.backward(dZ, self._Z[a:b], self._A[a:b])
        dZ2 = dZ.reshape(-1, F)
        own = k == 0
        dW = self._kernel("grad") if own else self._buf(f"dW{k}", self._kernel().shape, dY.dtype)
        tmp = self._buf(f"dWtmp{k}", dW.shape, dY.dtype)
        for start in range(a, b, block):
            stop = min(start + block, b)
            part = dZ2[(start - a) * rows : (stop - a) * rows]
            cols = self._columns(start, stop, f"cols{k}")
            if start == a:
                product(cols.T, part, dW)
            else:
                dW += product(cols.T, part, tmp)
        db = None
        if self.use_bias:
            db = self.grads["b"] if own else self._buf(f"db{k}", (F,), dY.dtype)
            product(self._ones(dZ2.shape[0], dY.dtype), dZ2, db)
        if dX is not None:
            if self._pointwise:
                product(dZ2, self._kernel().T, dX[a:b].reshape(-1, g.C))
            else:
                dX[a:b].fill(0.0)
                g.input_gradient(
                    self, dZ.reshape(b - a, g.Ho, g.Wo, F), self._kernel(), dX[a:b], str(k)
                )
        return dW, db
