"""The NumPy exporter's image layers (a part of ``NumpyWriter``): conv2d, pooling,
upsampling, batchnorm, layernorm, reshape, each as nnlab computes it in evaluation, in the
same order and on the same blocks of samples, so that the numbers are nnlab's bit for bit.
"""

from __future__ import annotations

from nnlab.export.base import Value
from nnlab.nn.conv import Windows

# Helper functions of the exported program (see numpy_export.HELPERS).
IMAGE_HELPERS = {
    "conv2d": """
def _conv2d(x, W, kernel, strides, dilation, pads, out_hw, block):
    \"\"\"nnlab's conv2d product: x (n, H, W, C) padded with zeros, each window's values in a
    row of columns (kh * kw * C; transposed for one channel), times W (kh * kw * C, F), a
    block of samples at a time.\"\"\"
    (kh, kw), (sh, sw), (dh, dw), (pt, pb, pl, pr), (Ho, Wo) = (
        kernel, strides, dilation, pads, out_hw)
    n, C, F = x.shape[0], x.shape[3], W.shape[1]
    pointwise = (kh, kw, sh, sw, pt, pb, pl, pr) == (1, 1, 1, 1, 0, 0, 0, 0)
    x = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    z = np.empty((n * Ho * Wo, F), x.dtype)
    for start in range(0, n, block):
        xb = x[start : start + block]
        m, s = xb.shape[0], xb.strides
        if pointwise:  # each pixel alone: the image is its own columns
            cols = xb.reshape(-1, C)
        elif C == 1:
            cols = np.empty((kh, kw, m, Ho, Wo), x.dtype)
            for i in range(kh):
                for j in range(kw):
                    cols[i, j] = xb[:, i * dh : i * dh + sh * (Ho - 1) + 1 : sh,
                                    j * dw : j * dw + sw * (Wo - 1) + 1 : sw, 0]
            cols = cols.reshape(kh * kw, -1).T
        else:
            strides = (s[0], sh * s[1], sw * s[2], dh * s[1], dw * s[2], s[3])
            windows = np.lib.stride_tricks.as_strided(xb, (m, Ho, Wo, kh, kw, C), strides)
            cols = np.ascontiguousarray(windows).reshape(-1, kh * kw * C)
        z[start * Ho * Wo : (start + m) * Ho * Wo] = cols @ W
    return z.reshape(n, Ho, Wo, F)
""",
    "pool": """
def _pool(x, kind, pool, strides, pads, out_hw):
    \"\"\"nnlab's pooling: down the window's rows, then across; max, or the sum (divided
    by the window's count after).\"\"\"
    (kh, kw), (sh, sw), (pt, pb, pl, pr), (Ho, Wo) = pool, strides, pads, out_hw
    fill = -np.inf if kind == "max" else 0.0
    x = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=fill)
    out = x[:, 0 : sh * (Ho - 1) + 1 : sh].copy()
    for i in range(1, kh):
        v = x[:, i : i + sh * (Ho - 1) + 1 : sh]
        out = np.maximum(out, v) if kind == "max" else np.add(out, v, out=out)
    rows, out = out, out[:, :, 0 : sw * (Wo - 1) + 1 : sw].copy()
    for j in range(1, kw):
        v = rows[:, :, j : j + sw * (Wo - 1) + 1 : sw]
        out = np.maximum(out, v) if kind == "max" else np.add(out, v, out=out)
    return out
""",
    "layernorm": """
def _layernorm(x, gamma, beta, eps):
    \"\"\"nnlab's layernorm over the last axis.\"\"\"
    xhat = x - np.mean(x, axis=-1, keepdims=True)
    xhat /= np.sqrt(np.mean(np.square(xhat), axis=-1, keepdims=True) + x.dtype.type(eps))
    out = xhat * gamma if gamma is not None else xhat
    return out + beta if beta is not None else out
""",
}


class NumpyImages:
    """Methods of ``NumpyWriter`` (``emit``, ``const``, ``helper``...) for the image layers."""

    def _geometry(self, node) -> Windows:
        return node.layer._g

    def layer_reshape(self, node, x):
        self.emit(f"# {self.describe(node, x)}")
        y = Value(f"h{node.index}", tuple(node.layer._out))
        self.emit(f"{y.name} = {x.name}.reshape({x.name}.shape[0], {', '.join(map(str, y.shape))})")
        return y

    def layer_conv2d(self, node, x):
        layer, i, g = node.layer, node.index, self._geometry(node)
        W = self.const(f"W{i}", layer.params["W"].reshape(-1, layer.filters))
        block = layer._block(self.dtype.itemsize)
        y = Value(f"h{i}", (g.Ho, g.Wo, layer.filters))
        self.emit(f"# {self.describe(node, x)}")
        args = (
            f"({g.kh}, {g.kw}), ({g.sh}, {g.sw}), ({g.dh}, {g.dw}), {g.pads}, ({g.Ho}, {g.Wo}), "
            f"{block}"
        )
        self.emit(f"{y.name} = {self.helper('conv2d')}({x.name}, {W}, {args})")
        if layer.use_bias:
            self.emit(f"{y.name} += {self.const(f'b{i}', layer.params['b'])}")
        return self.activation(node, y)

    def _pool(self, node, x, kind: str) -> Value:
        g, i = self._geometry(node), node.index
        y = Value(f"h{i}", (g.Ho, g.Wo, g.C))
        self.emit(f"# {self.describe(node, x)}")
        args = f"({g.kh}, {g.kw}), ({g.sh}, {g.sw}), {g.pads}, ({g.Ho}, {g.Wo})"
        self.emit(f"{y.name} = {self.helper('pool')}({x.name}, {kind!r}, {args})")
        if kind == "avg":
            count = node.layer._count
            c = self.const(f"count{i}", count) if count.ndim else repr(count.item())
            self.emit(f"{y.name} /= {c}")
        return y

    def layer_maxpool2d(self, node, x):
        return self._pool(node, x, "max")

    def layer_avgpool2d(self, node, x):
        return self._pool(node, x, "avg")

    def layer_global_avgpool2d(self, node, x):
        y = Value(f"h{node.index}", (x.shape[-1],))
        self.emit(f"# {self.describe(node, x)}")
        self.emit(f"{y.name} = np.mean({x.name}, axis=(1, 2))")
        return y

    def layer_upsample2d(self, node, x):
        (a, b), (H, W, C) = node.layer._size, x.shape
        y = Value(f"h{node.index}", (H * a, W * b, C))
        self.emit(f"# {self.describe(node, x)}")
        self.emit(f"{y.name} = np.repeat(np.repeat({x.name}, {a}, axis=1), {b}, axis=2)")
        return y

    def layer_batchnorm(self, node, x):
        # nnlab in evaluation: x * a + b per channel, a and b from the running averages
        a, b = node.layer.inference_affine()
        i = node.index
        y = Value(f"h{i}", x.shape)
        self.emit(f"# {self.describe(node, x)}")
        self.emit(
            f"{y.name} = {x.name} * {self.const(f'bn_a{i}', a)} + {self.const(f'bn_b{i}', b)}"
        )
        return y

    def layer_layernorm(self, node, x):
        layer, i = node.layer, node.index
        gamma = self.const(f"gamma{i}", layer.params["gamma"]) if layer.scale else "None"
        beta = self.const(f"beta{i}", layer.params["beta"]) if layer.center else "None"
        y = Value(f"h{i}", x.shape)
        self.emit(f"# {self.describe(node, x)}")
        self.emit(
            f"{y.name} = {self.helper('layernorm')}({x.name}, {gamma}, {beta}, {layer.eps!r})"
        )
        return y
