"""The ONNX exporter's image layers (a part of ``OnnxWriter``): conv2d, pooling, upsampling,
batchnorm, layernorm, reshape, and the image layouts.

nnlab's images are NHWC, ONNX's operators want NCHW: a value is transposed where a layer that
wants the other layout reads it (once: the transposed tensor is kept), so a convolutional
network transposes after its reshape and before its flatten. For float64 models, whose Conv,
AveragePool, GlobalAveragePool and Resize onnxruntime implements for float only, convolution
and average pooling are sums over the window's taps of Slices (Einsum with the kernel's tap
for a convolution), global pooling ReduceMean and upsampling Expand.
"""

from __future__ import annotations

import numpy as np

from nnlab.export.base import Value, concat_shape

# layers that take images in ONNX's NCHW layout (and give them so); the others get NHWC
NCHW_LAYERS = ("conv2d", "maxpool2d", "avgpool2d", "global_avgpool2d", "upsample2d", "batchnorm")
ELEMENTWISE = ("activation", "dropout")  # either layout, kept


class OnnxImages:
    """Methods of ``OnnxWriter`` (``op``, ``const``, ``nchw``...) for the image layers."""

    def _transpose(self, x: Value, to_nchw: bool) -> Value:
        name = self._transposed.get(x.name)
        if name is None:
            perm, tag = ([0, 3, 1, 2], "nchw") if to_nchw else ([0, 2, 3, 1], "nhwc")
            name = self.op("Transpose", [x.name], f"{x.name}.{tag}", perm=perm)
            self._transposed[x.name] = name
            self._transposed[name] = x.name
            if to_nchw:
                self.nchw.add(name)
        return Value(name, x.shape)

    def as_nchw(self, x: Value) -> Value:
        """An image (batch, height, width, channels in nnlab) laid out NCHW."""
        return x if x.name in self.nchw else self._transpose(x, True)

    def as_nhwc(self, x: Value) -> Value:
        return self._transpose(x, False) if x.name in self.nchw else x

    def layer(self, node, x):
        if node.kind not in NCHW_LAYERS + ELEMENTWISE:
            x = self.as_nhwc(x)
        return super().layer(node, x)

    def join(self, node, values):
        if len(values[0].shape) == 3 and all(v.name in self.nchw for v in values):
            if node.join == "concat":  # channels: axis 1 in NCHW
                y = self.op(
                    "Concat", [v.name for v in values], f"layers.{node.index}.concat", axis=1
                )
                self.nchw.add(y)
                return Value(y, concat_shape(values))
            y = super().join(node, values)
            self.nchw.add(y.name)
            return y
        return super().join(node, [self.as_nhwc(v) for v in values])

    def activation(self, node, x):
        y = super().activation(node, x)
        if x.name in self.nchw:
            self.nchw.add(y.name)
        return y

    def layer_reshape(self, node, x):
        shape = tuple(node.layer._out)
        to = self.const_int(f"layers.{node.index}.shape", [-1, *shape])
        return Value(self.op("Reshape", [x.name, to], f"layers.{node.index}.reshape"), shape)

    @staticmethod
    def _window_attrs(g) -> dict:
        pt, pb, pl, pr = g.pads
        return {"kernel_shape": [g.kh, g.kw], "strides": [g.sh, g.sw], "pads": [pt, pl, pb, pr]}

    def _image(self, y: str, shape: tuple[int, ...]) -> Value:
        self.nchw.add(y)
        return Value(y, shape)

    def _taps(self, p: str, x: Value, g, fill: float = 0.0) -> list[tuple[int, int, str]]:
        """(i, j, tensor): for each tap of the windows, the (N, C, Ho, Wo) input elements it
        reads, as Slices of the padded NCHW input (the float64 path)."""
        pt, pb, pl, pr = g.pads
        xp = self.as_nchw(x).name
        if any(g.pads):
            pads = self.const_int(f"{p}.pads", [0, 0, pt, pl, 0, 0, pb, pr])
            xp = self.op("Pad", [xp, pads, self.const(f"{p}.fill", fill)], f"{p}.pad")
        axes, steps = (
            self.const_int(f"{p}.axes", [2, 3]),
            self.const_int(f"{p}.steps", [g.sh, g.sw]),
        )
        taps = []
        for i, j in g.offsets:
            r, c = i * g.dh, j * g.dw
            starts = self.const_int(f"{p}.start{i}_{j}", [r, c])
            ends = self.const_int(
                f"{p}.end{i}_{j}", [r + g.sh * (g.Ho - 1) + 1, c + g.sw * (g.Wo - 1) + 1]
            )
            taps.append(
                (i, j, self.op("Slice", [xp, starts, ends, axes, steps], f"{p}.tap{i}_{j}"))
            )
        return taps

    def _conv_by_taps(self, node, x) -> str:
        """A float64 convolution: the sum over taps of tap (N, C, Ho, Wo) x W[i, j] (C, F)."""
        layer, p, g = node.layer, f"layers.{node.index}", node.layer._g
        y = None
        for i, j, tap in self._taps(p, x, g):
            w = self.const(f"{p}.W{i}_{j}", layer.params["W"][i, j])
            t = self.op("Einsum", [tap, w], f"{p}.conv{i}_{j}", equation="nchw,cf->nfhw")
            y = t if y is None else self.op("Add", [y, t], f"{p}.sum")
        if layer.use_bias:
            b = self.const(f"{p}.b", layer.params["b"].reshape(1, -1, 1, 1))
            y = self.op("Add", [y, b], f"{p}.bias")
        return y

    def layer_conv2d(self, node, x):
        layer, p, g = node.layer, f"layers.{node.index}", node.layer._g
        if self.dtype != np.float32:
            y = self._image(self._conv_by_taps(node, x), (g.Ho, g.Wo, layer.filters))
            return self.activation(node, y)
        W = self.const(f"{p}.W", layer.params["W"].transpose(3, 2, 0, 1))  # (F, C, kh, kw)
        ins = [self.as_nchw(x).name, W]
        if layer.use_bias:
            ins.append(self.const(f"{p}.b", layer.params["b"]))
        attrs = {**self._window_attrs(g), "dilations": [g.dh, g.dw]}
        y = self._image(self.op("Conv", ins, f"{p}.conv", **attrs), (g.Ho, g.Wo, layer.filters))
        return self.activation(node, y)

    def layer_maxpool2d(self, node, x):
        g, p = node.layer._g, f"layers.{node.index}"
        y = self.op("MaxPool", [self.as_nchw(x).name], f"{p}.maxpool", **self._window_attrs(g))
        return self._image(y, (g.Ho, g.Wo, g.C))

    def layer_avgpool2d(self, node, x):
        g, p = node.layer._g, f"layers.{node.index}"
        if self.dtype != np.float32:  # the sum of the taps over the count of each window
            y = None
            for _, _, tap in self._taps(p, x, g):
                y = tap if y is None else self.op("Add", [y, tap], f"{p}.sum")
            count = np.broadcast_to(node.layer._count, (g.Ho, g.Wo, 1)).transpose(2, 0, 1)
            y = self.op("Div", [y, self.const(f"{p}.count", count[None])], f"{p}.mean")
            return self._image(y, (g.Ho, g.Wo, g.C))
        attrs = {**self._window_attrs(g), "count_include_pad": 0}
        y = self.op("AveragePool", [self.as_nchw(x).name], f"{p}.avgpool", **attrs)
        return self._image(y, (g.Ho, g.Wo, g.C))

    def layer_global_avgpool2d(self, node, x):
        p = f"layers.{node.index}"
        if self.dtype != np.float32:
            y = self.op("ReduceMean", [self.as_nchw(x).name], f"{p}.mean", axes=[2, 3], keepdims=0)
            return Value(y, (x.shape[-1],))
        y = self.op("GlobalAveragePool", [self.as_nchw(x).name], f"{p}.pool")  # (N, C, 1, 1)
        return Value(self.op("Flatten", [y], f"{p}.flatten", axis=1), (x.shape[-1],))

    def layer_upsample2d(self, node, x):
        (a, b), (H, W, C), p = node.layer._size, x.shape, f"layers.{node.index}"
        if self.dtype != np.float32:  # (N, C, H, 1, W, 1) expanded to (N, C, H, a, W, b)
            x6 = self.op(
                "Reshape",
                [self.as_nchw(x).name, self.const_int(f"{p}.split", [-1, C, H, 1, W, 1])],
                f"{p}.split",
            )
            big = self.op(
                "Expand", [x6, self.const_int(f"{p}.repeat", [1, 1, 1, a, 1, b])], f"{p}.repeat"
            )
            y = self.op(
                "Reshape", [big, self.const_int(f"{p}.merge", [-1, C, H * a, W * b])], f"{p}.merge"
            )
            return self._image(y, (H * a, W * b, C))
        scales = self.name(f"{p}.scales")
        self.initializers.append(
            self.onnx.numpy_helper.from_array(np.array([1, 1, a, b], np.float32), scales)
        )
        y = self.op(
            "Resize",
            [self.as_nchw(x).name, "", scales],
            f"{p}.resize",
            mode="nearest",
            coordinate_transformation_mode="asymmetric",
            nearest_mode="floor",
        )
        return self._image(y, (H * a, W * b, C))

    def layer_batchnorm(self, node, x):
        layer, p = node.layer, f"layers.{node.index}"
        c = layer._channels
        if len(x.shape) == 2:  # (time, features): BatchNormalization's channels are axis 1
            a, b = layer.inference_affine()
            y = self.op("Mul", [self.as_nhwc(x).name, self.const(f"{p}.a", a)], f"{p}.scale")
            return Value(self.op("Add", [y, self.const(f"{p}.b", b)], f"{p}.shift"), x.shape)
        ins = [
            self.as_nchw(x).name if len(x.shape) == 3 else x.name,
            self.const(f"{p}.gamma", layer.params["gamma"] if layer.scale else np.ones(c)),
            self.const(f"{p}.beta", layer.params["beta"] if layer.center else np.zeros(c)),
            self.const(f"{p}.mean", layer.buffers["running_mean"]),
            self.const(f"{p}.var", layer.buffers["running_var"]),
        ]
        y = self.op("BatchNormalization", ins, f"{p}.batchnorm", epsilon=float(layer.eps))
        return self._image(y, x.shape) if len(x.shape) == 3 else Value(y, x.shape)

    def layer_layernorm(self, node, x):
        layer, p = node.layer, f"layers.{node.index}"
        c = layer._channels
        ins = [
            x.name,
            self.const(f"{p}.gamma", layer.params["gamma"] if layer.scale else np.ones(c)),
        ]
        if layer.center:
            ins.append(self.const(f"{p}.beta", layer.params["beta"]))
        y = self.op("LayerNormalization", ins, f"{p}.layernorm", axis=-1, epsilon=float(layer.eps))
        return Value(y, x.shape)
