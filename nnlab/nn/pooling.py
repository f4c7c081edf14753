"""Layers over images besides the convolution: max and average pooling, global average
pooling, nearest-neighbour upsampling. Images are (batch, height, width, channels); windows
follow Keras (see ``nnlab.nn.conv``, whose ``Windows`` they share).

Pooling runs in two passes, down the window's rows and then across its columns (the max or
the sum of a window is that of its rows' maxima or sums): kh + kw strided passes, the first
over whole image rows, instead of kh * kw; in pieces of samples on the run's threads
(``nnlab.nn.workers``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Annotated

import numpy as np

from nnlab.nn import workers
from nnlab.nn.conv import Padding, Windows, check_pairs, image_shape, pair
from nnlab.nn.layers import LAYERS, Layer
from nnlab.schema import Doc

Array = np.ndarray


@dataclass(eq=False)
class _Pool(Layer):
    """Pooling in two passes, down the window's rows and then across its columns (the max or
    the sum of a window is that of its rows' maxima or sums): kh + kw strided passes, the first
    over whole image rows, instead of kh * kw."""

    pool_size: Annotated[int | list[int], Doc("the window's height and width: n, or [h, w]")] = 2
    strides: Annotated[
        int | list[int] | None, Doc("step between windows (null: the pool size, as Keras)")
    ] = None
    padding: Annotated[
        Padding, Doc("valid: windows inside the image; same: padded to ceil(size / stride)")
    ] = "valid"

    @staticmethod
    def __post_check__(p: dict, path: str) -> None:
        check_pairs(p, path, "pool_size", "strides")

    def build(self, input_shape, rng, dtype):
        strides = self.pool_size if self.strides is None else self.strides
        kind = LAYERS.name_of(self)
        g = self._g = Windows.of(kind, input_shape, self.pool_size, strides, 1, self.padding)
        return (g.Ho, g.Wo, g.C)

    def _taps(self, axis: int) -> int:
        return self._g.kh if axis == 1 else self._g.kw

    def _shapes(self, n: int) -> tuple[tuple, tuple, tuple]:
        """(padded input, rows pooled, output) shapes for a batch of n."""
        g = self._g
        return (n, *g.padded_shape), (n, g.Ho, g.padded_shape[1], g.C), (n, g.Ho, g.Wo, g.C)

    def _zero_unless_tiled(self, d: Array, axis: int) -> bool:
        """Zero a pass's input gradient unless its taps tile it (then every element is
        written once); returns whether they tile it."""
        tiles = self._g.tiles(axis)
        if not tiles:
            d.fill(0.0)
        return tiles

    @staticmethod
    def _in_pieces(n: int, piece) -> None:
        """piece(a, b) for the samples of a batch cut into a piece per thread of the run."""
        workers.run([partial(piece, a, b) for a, b in workers.pieces(n, workers.count())])


@LAYERS.register("maxpool2d", aliases=("max_pooling2d", "maxpool"))
@dataclass(eq=False)
class MaxPool2D(_Pool):
    """Max pooling over windows of each channel of images (batch, height, width, channels).
    The gradient goes to one largest element of each window: of the largest in each window
    row, the first; of those rows, the first holding the window's largest."""

    def _max(self, A: Array, axis: int, out: Array, won: list[Array]) -> None:
        """The maximum over the taps along ``axis`` into ``out``, and in ``won`` (a boolean
        array per tap after the first) where each tap exceeded the taps before it."""
        g = self._g
        np.copyto(out, g.along(A, axis, 0))
        for t in range(1, self._taps(axis)):
            v = g.along(A, axis, t)
            np.greater(v, out, out=won[t - 1])
            np.maximum(out, v, out=out)

    def _won(self, key: str, axis: int, shape: tuple) -> list[Array]:
        return [self._buf(f"{key}{t}", shape, bool) for t in range(1, self._taps(axis))]

    def forward(self, X, training=False):
        _padded, rows, out = self._shapes(X.shape[0])
        Xp = self._g.pad(self, X, "Xp", fill=-np.inf)
        R, Y = self._buf("R", rows, X.dtype), self._buf("out", out, X.dtype)
        # the winners, in evaluation too: saliency and Grad-CAM backpropagate from there
        won_r, won_c = self._won("rows", 1, rows), self._won("cols", 2, out)

        def piece(a: int, b: int) -> None:
            self._max(Xp[a:b], 1, R[a:b], [w[a:b] for w in won_r])
            self._max(R[a:b], 2, Y[a:b], [w[a:b] for w in won_c])

        self._in_pieces(X.shape[0], piece)
        return Y

    def _route(self, dY: Array, d: Array, axis: int, won: list[Array], rest: Array) -> None:
        """Backward of one pass into d: each element of dY goes to the last tap that exceeded
        all the taps before it (the first tap if none did). ``rest`` is scratch like dY."""
        g = self._g
        tiles = self._zero_unless_tiled(d, axis)
        np.copyto(rest, dY)
        for t in range(self._taps(axis) - 1, 0, -1):
            v = g.along(d, axis, t)
            if tiles:
                np.multiply(rest, won[t - 1], out=v)
                rest -= v
            else:
                part = rest * won[t - 1]
                v += part
                rest -= part
        v = g.along(d, axis, 0)
        if tiles:
            np.copyto(v, rest)
        else:
            v += rest

    def backward(self, dY, need_dx=True):
        if not need_dx:
            return None
        padded, rows, out = self._shapes(dY.shape[0])
        dR, dXp = self._buf("dR", rows, dY.dtype), self._buf("dXp", padded, dY.dtype)
        won_r, won_c = self._won("rows", 1, rows), self._won("cols", 2, out)
        rest_c, rest_r = self._buf("rest_c", out, dY.dtype), self._buf("rest_r", rows, dY.dtype)

        def piece(a: int, b: int) -> None:
            self._route(dY[a:b], dR[a:b], 2, [w[a:b] for w in won_c], rest_c[a:b])
            self._route(dR[a:b], dXp[a:b], 1, [w[a:b] for w in won_r], rest_r[a:b])

        self._in_pieces(dY.shape[0], piece)
        return self._g.interior(dXp)


@LAYERS.register("avgpool2d", aliases=("average_pooling2d", "avgpool"))
@dataclass(eq=False)
class AvgPool2D(_Pool):
    """Average pooling over windows of each channel of images (batch, height, width,
    channels): the sum of each window (rows first, then across) divided by its count. With
    padding: same, the count is of the window's elements inside the image (Keras; PyTorch's
    count_include_pad=False)."""

    def build(self, input_shape, rng, dtype):
        out = super().build(input_shape, rng, dtype)
        g = self._g
        if g.padded:  # how many elements of each window are inside the image: (Ho, Wo, 1)
            inside = np.zeros((1, *g.padded_shape[:2], 1))
            g.interior(inside)[...] = 1
            R = np.empty((1, g.Ho, g.padded_shape[1], 1))
            count = np.empty((1, g.Ho, g.Wo, 1))
            self._sum(inside, 1, R)
            self._sum(R, 2, count)
            self._count = count[0].astype(dtype)
        else:
            self._count = np.asarray(g.kh * g.kw, dtype)
        return out

    def _sum(self, A: Array, axis: int, out: Array) -> None:
        """The sum over the taps along ``axis``, added in tap order, into ``out``."""
        g = self._g
        np.copyto(out, g.along(A, axis, 0))
        for t in range(1, self._taps(axis)):
            out += g.along(A, axis, t)

    def forward(self, X, training=False):
        _padded, rows, out = self._shapes(X.shape[0])
        Xp = self._g.pad(self, X, "Xp")
        R, Y = self._buf("R", rows, X.dtype), self._buf("out", out, X.dtype)

        def piece(a: int, b: int) -> None:
            self._sum(Xp[a:b], 1, R[a:b])
            self._sum(R[a:b], 2, Y[a:b])
            Y[a:b] /= self._count

        self._in_pieces(X.shape[0], piece)
        return Y

    def _spread(self, dY: Array, d: Array, axis: int) -> None:
        """Backward of one pass into d: every tap receives dY."""
        g = self._g
        tiles = self._zero_unless_tiled(d, axis)
        for t in range(self._taps(axis)):
            v = g.along(d, axis, t)
            if tiles:
                np.copyto(v, dY)
            else:
                v += dY

    def backward(self, dY, need_dx=True):
        if not need_dx:
            return None
        padded, rows, out = self._shapes(dY.shape[0])
        share = self._buf("share", out, dY.dtype)
        dR, dXp = self._buf("dR", rows, dY.dtype), self._buf("dXp", padded, dY.dtype)

        def piece(a: int, b: int) -> None:
            np.divide(dY[a:b], self._count, out=share[a:b])
            self._spread(share[a:b], dR[a:b], 2)
            self._spread(dR[a:b], dXp[a:b], 1)

        self._in_pieces(dY.shape[0], piece)
        return self._g.interior(dXp)


@LAYERS.register("global_avgpool2d", aliases=("global_average_pooling2d",))
@dataclass(eq=False)
class GlobalAvgPool2D(Layer):
    """The mean of each channel over the image: (batch, height, width, channels) ->
    (batch, channels)."""

    def build(self, input_shape, rng, dtype):
        self._shape = image_shape("global_avgpool2d", input_shape)
        return (self._shape[2],)

    def forward(self, X, training=False):
        return np.mean(X, axis=(1, 2), out=self._buf("out", (X.shape[0], X.shape[3]), X.dtype))

    def backward(self, dY, need_dx=True):
        if not need_dx:
            return None
        H, W, C = self._shape
        dX = self._buf("dX", (dY.shape[0], H, W, C), dY.dtype)
        np.divide(dY[:, None, None, :], H * W, out=dX)
        return dX


@LAYERS.register("upsample2d", aliases=("upsampling2d",))
@dataclass(eq=False)
class UpSample2D(Layer):
    """Nearest-neighbour upsampling of images: each pixel repeated ``size`` times down and
    across, (batch, h, w, c) -> (batch, h * size_h, w * size_w, c); for decoders."""

    size: Annotated[int | list[int], Doc("the repeat factor: n, or [down, across]")] = 2

    @staticmethod
    def __post_check__(p: dict, path: str) -> None:
        check_pairs(p, path, "size")

    def build(self, input_shape, rng, dtype):
        H, W, C = self._shape = image_shape("upsample2d", input_shape)
        self._size = pair(self.size)
        return (H * self._size[0], W * self._size[1], C)

    def forward(self, X, training=False):
        (H, W, C), (a, b) = self._shape, self._size
        out = self._buf("out", (X.shape[0], H, a, W, b, C), X.dtype)
        out[...] = X[:, :, None, :, None, :]
        return out.reshape(X.shape[0], H * a, W * b, C)

    def backward(self, dY, need_dx=True):
        if not need_dx:
            return None
        (H, W, C), (a, b) = self._shape, self._size
        n = dY.shape[0]
        dX = self._buf("dX", (n, H, W, C), dY.dtype)
        return np.sum(dY.reshape(n, H, a, W, b, C), axis=(2, 4), out=dX)
