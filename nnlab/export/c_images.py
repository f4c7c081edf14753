"""The C exporter's image layers (a part of ``CWriter``): conv2d, pooling, upsampling,
batchnorm, layernorm, reshape. An image is its (height, width, channels) values row by row, as
nnlab holds it: a convolution loops over the output pixels, the kernel's taps that fall inside
the image and the channels; batchnorm is ``x * a[c] + b[c]`` with a and b from its running
averages.
"""

from __future__ import annotations

from collections.abc import Callable

from nnlab.export.base import Value


class CImages:
    """Methods of ``CWriter`` (``emit``, ``open``, ``const``, ``buffer``...) for the image
    layers."""

    def layer_reshape(self, node, x):
        self.emit(f"/* {self.describe(node, x)}: the same values, row by row */")
        return Value(x.name, tuple(node.layer._out))

    def _windows(self, g, x: str, body: Callable[[str, str], None]) -> None:
        """Loops over the output pixels (oy, ox) and the taps (i, j) of their windows that
        fall inside the input; ``body(o, xp)`` emits the work on the output pixel's values
        ``o`` and the tap's input pixel ``xp``, given the tap's index as ``i``, ``j``."""
        pt, _, pl, _ = g.pads
        self.open(f"for (int i = 0; i < {g.kh}; i++) {{")
        self.emit(f"const int iy = oy * {g.sh} - {pt} + i * {g.dh};")
        self.emit(f"if (iy < 0 || iy >= {g.H}) continue;")
        self.open(f"for (int j = 0; j < {g.kw}; j++) {{")
        self.emit(f"const int ix = ox * {g.sw} - {pl} + j * {g.dw};")
        self.emit(f"if (ix < 0 || ix >= {g.W}) continue;")
        body("o", f"{x} + (iy * {g.W} + ix) * {g.C}")
        self.close()
        self.close()

    def _pixels(self, y: Value) -> None:
        """Open the loops over a (Ho, Wo, K) output's pixels, with ``o`` its K values."""
        Ho, Wo, K = y.shape
        self.open(f"for (int oy = 0; oy < {Ho}; oy++) {{")
        self.open(f"for (int ox = 0; ox < {Wo}; ox++) {{")
        self.emit(f"{self.T} *o = {y.name} + (oy * {Wo} + ox) * {K};")

    def layer_conv2d(self, node, x):
        layer, i, g = node.layer, node.index, node.layer._g
        F, zero = layer.filters, f"0.0{self.suffix}"
        W = self.const(
            f"nnlab_W{i}", layer.params["W"], f"{node.where}: W ({g.kh}, {g.kw}, {g.C}, {F})"
        )
        self.emit(f"/* {self.describe(node, x)} */")
        y = self.buffer(f"h{i}", (g.Ho, g.Wo, F))
        self._pixels(y)
        self.emit(f"for (int f = 0; f < {F}; f++) o[f] = {zero};")

        def tap(o: str, xp: str) -> None:
            self.emit(f"const {self.T} *xp = {xp}, *w = {W} + (i * {g.kw} + j) * {g.C * F};")
            self.open(f"for (int c = 0; c < {g.C}; c++) {{")
            self.emit(f"const {self.T} xc = xp[c], *wc = w + c * {F};")
            self.emit(f"for (int f = 0; f < {F}; f++) {o}[f] += xc * wc[f];")
            self.close()

        self._windows(g, x.name, tap)
        if layer.use_bias:
            b = self.const(f"nnlab_b{i}", layer.params["b"], f"{node.where}: b ({F},)")
            self.emit(f"for (int f = 0; f < {F}; f++) o[f] += {b}[f];")
        self.close()
        self.close()
        return self.activation(node, y)

    def _pool(self, node, x, kind: str) -> Value:
        g = node.layer._g
        self.emit(f"/* {self.describe(node, x)} */")
        y = self.buffer(f"h{node.index}", (g.Ho, g.Wo, g.C))
        self._pixels(y)
        first = "-INFINITY" if kind == "max" else f"0.0{self.suffix}"
        self.emit(f"for (int c = 0; c < {g.C}; c++) o[c] = {first};")
        if kind == "avg":
            self.emit("int count = 0;")

        def tap(o: str, xp: str) -> None:
            self.emit(f"const {self.T} *xp = {xp};")
            if kind == "max":
                self.emit(
                    f"for (int c = 0; c < {g.C}; c++) {o}[c] = xp[c] > {o}[c] ? xp[c] : {o}[c];"
                )
            else:
                self.emit(f"for (int c = 0; c < {g.C}; c++) {o}[c] += xp[c];")
                self.emit("count++;")

        self._windows(g, x.name, tap)
        if kind == "avg":  # the window's elements inside the image, as nnlab counts them
            self.emit(f"for (int c = 0; c < {g.C}; c++) o[c] /= ({self.T})count;")
        self.close()
        self.close()
        return y

    def layer_maxpool2d(self, node, x):
        return self._pool(node, x, "max")

    def layer_avgpool2d(self, node, x):
        return self._pool(node, x, "avg")

    def layer_global_avgpool2d(self, node, x):
        H, W, C = x.shape
        self.emit(f"/* {self.describe(node, x)} */")
        y = self.buffer(f"h{node.index}", (C,))
        self.emit(f"for (int c = 0; c < {C}; c++) {y.name}[c] = 0.0{self.suffix};")
        self.emit(f"for (int p = 0; p < {H * W}; p++)")
        self.emit(f"    for (int c = 0; c < {C}; c++) {y.name}[c] += {x.name}[p * {C} + c];")
        self.emit(f"for (int c = 0; c < {C}; c++) {y.name}[c] /= {self.number(H * W)};")
        return y

    def layer_upsample2d(self, node, x):
        (a, b), (H, W, C) = node.layer._size, x.shape
        self.emit(f"/* {self.describe(node, x)} */")
        y = self.buffer(f"h{node.index}", (H * a, W * b, C))
        self.open(f"for (int oy = 0; oy < {H * a}; oy++) {{")
        self.open(f"for (int ox = 0; ox < {W * b}; ox++) {{")
        self.emit(f"const {self.T} *xp = {x.name} + (oy / {a} * {W} + ox / {b}) * {C};")
        self.emit(f"for (int c = 0; c < {C}; c++) {y.name}[(oy * {W * b} + ox) * {C} + c] = xp[c];")
        self.close()
        self.close()
        return y

    def layer_batchnorm(self, node, x):
        # nnlab in evaluation: x * a + b per channel, a and b from the running averages
        a, b = node.layer.inference_affine()
        i, C = node.index, x.shape[-1]
        A = self.const(f"nnlab_bn_a{i}", a, f"{node.where}: gamma / sqrt(running_var + eps)")
        B = self.const(f"nnlab_bn_b{i}", b, f"{node.where}: beta - running_mean * a")
        self.emit(f"/* {self.describe(node, x)} */")
        y = self.buffer(f"h{i}", x.shape)
        self.emit(f"for (int p = 0; p < {x.size // C}; p++)")
        self.emit(
            f"    for (int c = 0; c < {C}; c++) {y.name}[p * {C} + c] = "
            f"{x.name}[p * {C} + c] * {A}[c] + {B}[c];"
        )
        return y

    def layer_layernorm(self, node, x):
        layer, i, C = node.layer, node.index, x.shape[-1]
        T, zero = self.T, f"0.0{self.suffix}"
        self.emit(f"/* {self.describe(node, x)} */")
        y = self.buffer(f"h{i}", x.shape)
        self.open(f"for (int p = 0; p < {x.size // C}; p++) {{")
        self.emit(f"const {T} *v = {x.name} + p * {C};")
        self.emit(f"{T} *o = {y.name} + p * {C}, mean = {zero}, var = {zero};")
        self.emit(f"for (int c = 0; c < {C}; c++) mean += v[c];")
        self.emit(f"mean /= {self.number(C)};")
        self.emit(f"for (int c = 0; c < {C}; c++) var += (v[c] - mean) * (v[c] - mean);")
        sd = f"sqrt{self.suffix}(var / {self.number(C)} + {self.number(layer.eps)})"
        self.emit(f"const {T} sd = {sd};")
        expr = "(v[c] - mean) / sd"
        if layer.scale:
            gamma = self.const(f"nnlab_gamma{i}", layer.params["gamma"], f"{node.where}: gamma")
            expr += f" * {gamma}[c]"
        if layer.center:
            beta = self.const(f"nnlab_beta{i}", layer.params["beta"], f"{node.where}: beta")
            expr += f" + {beta}[c]"
        self.emit(f"for (int c = 0; c < {C}; c++) o[c] = {expr};")
        self.close()
        return y
