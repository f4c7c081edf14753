"""Recurrent layers over sequences (batch, time, features), with backpropagation through time.

The input projection of every time step is one matrix product before the loop; only the
recurrence itself steps through time. Arrays are kept time-major inside, so each step works on
contiguous (batch, units) blocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np

from nnlab.errors import ConfigError
from nnlab.nn.activations import ACTIVATIONS, Sigmoid
from nnlab.nn.initializers import INITIALIZERS
from nnlab.nn.layers import LAYERS, Layer, Spec
from nnlab.schema import Doc, Interval, Ref

Array = np.ndarray
_sigmoid = Sigmoid()


def _sequence_shape(layer: str, input_shape: tuple[int, ...]) -> tuple[int, int]:
    if len(input_shape) != 2:
        raise ConfigError(
            f"a {layer} layer takes sequences of shape (time, features) per sample, but its "
            f"input has shape {input_shape}"
        )
    return input_shape


@dataclass(eq=False)
class _Recurrent(Layer):
    def _time_major(self, X: Array) -> Array:
        """(batch, time, features) -> contiguous (time, batch, features)."""
        return np.ascontiguousarray(X.transpose(1, 0, 2))

    def _output(self, H: Array) -> Array:
        """H: (time + 1, batch, units) with H[0] the initial state."""
        if self.return_sequences:
            return np.ascontiguousarray(H[1:].transpose(1, 0, 2))  # (batch, time, units)
        return H[-1]

    def _dH(self, dY: Array, T: int) -> Array:
        """The gradient reaching each step's output h_t, time-major (time, batch, units)."""
        if self.return_sequences:
            return np.ascontiguousarray(dY.transpose(1, 0, 2))
        dH = np.zeros((T, *dY.shape), dY.dtype)
        dH[-1] = dY
        return dH

    def _input_grads(self, Xt: Array, dZ: Array, need_dx: bool) -> Array | None:
        """Kernel and bias gradients from all steps at once; dL/dX if needed."""
        T, N, F = Xt.shape
        dZ2 = dZ.reshape(T * N, -1)
        np.matmul(Xt.reshape(T * N, F).T, dZ2, out=self.grads["W"])
        np.sum(dZ2, axis=0, out=self.grads["b"])
        if not need_dx:
            return None
        dX = (dZ2 @ self.params["W"].T).reshape(T, N, F)
        return np.ascontiguousarray(dX.transpose(1, 0, 2))


@LAYERS.register("rnn", aliases=("simple_rnn",))
@dataclass(eq=False)
class RNN(_Recurrent):
    """Fully recurrent layer: ``h_t = activation(x_t W + h_{t-1} U + b)``, h_0 = 0."""

    units: Annotated[int, Interval(ge=1), Doc("size of the state h")]
    activation: Annotated[Spec, Ref(ACTIVATIONS), Doc("activation function")] = "tanh"
    initializer: Annotated[Spec, Ref(INITIALIZERS), Doc("initializer of W")] = "glorot_uniform"
    recurrent_initializer: Annotated[Spec, Ref(INITIALIZERS), Doc("initializer of U")] = (
        "orthogonal"
    )
    bias_initializer: Annotated[Spec, Ref(INITIALIZERS), Doc("initializer of b")] = "zeros"
    return_sequences: Annotated[
        bool, Doc("output h_t of every step (batch, time, units) instead of the last one")
    ] = False

    def __post_init__(self):
        self.no_decay = ("b",)
        self.activation_fn = ACTIVATIONS.build(self.activation)

    def build(self, input_shape, rng, dtype):
        T, F = _sequence_shape("rnn", input_shape)
        u = self.units
        self.params["W"] = INITIALIZERS.build(self.initializer)((F, u), rng, dtype)
        self.params["U"] = INITIALIZERS.build(self.recurrent_initializer)((u, u), rng, dtype)
        self.params["b"] = INITIALIZERS.build(self.bias_initializer)((u,), rng, dtype)
        return (T, u) if self.return_sequences else (u,)

    def forward(self, X, training=False):
        Xt = self._time_major(X)  # (T, N, F)
        T, N, F = Xt.shape
        W, U, b = self.params["W"], self.params["U"], self.params["b"]
        Z = (Xt.reshape(T * N, F) @ W).reshape(T, N, -1)  # (T, N, u): x_t W for every step
        Z += b
        H = np.zeros((T + 1, N, self.units), X.dtype)  # H[t + 1] = h_t
        for t in range(T):
            Z[t] += H[t] @ U
            h = self.activation_fn.forward(Z[t], H[t + 1])
            if h is not H[t + 1]:  # linear returns its input
                H[t + 1] = h
        self._Xt, self._Z, self._H = Xt, Z, H
        return self._output(H)

    def backward(self, dY, need_dx=True):
        Xt, Z, H = self._Xt, self._Z, self._H
        T = Xt.shape[0]
        U = self.params["U"]
        dH = self._dH(dY, T)
        dZ = np.empty_like(Z)
        dh_next = np.zeros_like(H[0])
        for t in range(T - 1, -1, -1):
            dh = dH[t] + dh_next
            dZ[t] = self.activation_fn.backward(dh, Z[t], H[t + 1])
            dh_next = dZ[t] @ U.T
        u = self.units
        np.matmul(H[:-1].reshape(-1, u).T, dZ.reshape(-1, u), out=self.grads["U"])
        return self._input_grads(Xt, dZ, need_dx)


def _sigmoid_tanh(x: Array, out: Array) -> Array:
    """sigmoid(x) = (1 + tanh(x / 2)) / 2: no overflow for any x, four passes."""
    np.multiply(x, 0.5, out=out)
    np.tanh(out, out=out)
    out *= 0.5
    out += 0.5
    return out


@LAYERS.register("lstm")
@dataclass(eq=False)
class LSTM(_Recurrent):
    """Long short-term memory (Hochreiter & Schmidhuber): ``c_t = f * c_{t-1} + i * g;
    h_t = o * tanh(c_t)`` with sigmoid gates i, f, o and tanh candidate g computed from
    ``x_t W + h_{t-1} U + b``; h_0 = c_0 = 0. W, U and b hold the four gates side by side in
    the order i, f, o, g (units columns each)."""

    units: Annotated[int, Interval(ge=1), Doc("size of the state h (and the cell c)")]
    initializer: Annotated[Spec, Ref(INITIALIZERS), Doc("initializer of W")] = "glorot_uniform"
    recurrent_initializer: Annotated[Spec, Ref(INITIALIZERS), Doc("initializer of U")] = (
        "orthogonal"
    )
    bias_initializer: Annotated[Spec, Ref(INITIALIZERS), Doc("initializer of b")] = "zeros"
    unit_forget_bias: Annotated[
        bool, Doc("add 1 to the forget gate's bias at initialization (Jozefowicz et al.)")
    ] = True
    return_sequences: Annotated[
        bool, Doc("output h_t of every step (batch, time, units) instead of the last one")
    ] = False

    def __post_init__(self):
        self.no_decay = ("b",)

    def build(self, input_shape, rng, dtype):
        T, F = _sequence_shape("lstm", input_shape)
        u = self.units
        self.params["W"] = INITIALIZERS.build(self.initializer)((F, 4 * u), rng, dtype)
        self.params["U"] = INITIALIZERS.build(self.recurrent_initializer)((u, 4 * u), rng, dtype)
        b = INITIALIZERS.build(self.bias_initializer)((4 * u,), rng, dtype)
        if self.unit_forget_bias:
            b[u : 2 * u] += 1.0
        self.params["b"] = b
        return (T, u) if self.return_sequences else (u,)

    def forward(self, X, training=False):
        Xt = self._time_major(X)
        T, N, F = Xt.shape
        u = self.units
        W, U, b = self.params["W"], self.params["U"], self.params["b"]
        A = (Xt.reshape(T * N, F) @ W).reshape(T, N, 4 * u)  # gates: i, f, o (sigmoid), g (tanh)
        A += b
        D = np.empty_like(A)  # each gate's derivative: s (1 - s), or 1 - g^2
        H = np.zeros((T + 1, N, u), X.dtype)
        C = np.zeros((T + 1, N, u), X.dtype)
        TC = np.empty((T, N, u), X.dtype)  # tanh(c_t)
        for t in range(T):
            a, d = A[t], D[t]
            a += H[t] @ U
            _sigmoid_tanh(a[:, : 3 * u], a[:, : 3 * u])
            np.tanh(a[:, 3 * u :], out=a[:, 3 * u :])
            np.multiply(a, a, out=d)
            np.subtract(a[:, : 3 * u], d[:, : 3 * u], out=d[:, : 3 * u])  # s - s^2
            np.subtract(1.0, d[:, 3 * u :], out=d[:, 3 * u :])  # 1 - g^2
            np.multiply(a[:, u : 2 * u], C[t], out=C[t + 1])
            C[t + 1] += a[:, :u] * a[:, 3 * u :]
            np.tanh(C[t + 1], out=TC[t])
            np.multiply(a[:, 2 * u : 3 * u], TC[t], out=H[t + 1])
        self._Xt, self._A, self._D, self._H, self._C, self._TC = Xt, A, D, H, C, TC
        return self._output(H)

    def backward(self, dY, need_dx=True):
        Xt, A, D, H, C, TC = self._Xt, self._A, self._D, self._H, self._C, self._TC
        T, N = Xt.shape[:2]
        u = self.units
        U = self.params["U"]
        dH = self._dH(dY, T)
        dA = np.empty_like(A)
        dh_next = np.zeros((N, u), A.dtype)
        carry = np.zeros((N, u), A.dtype)  # dL/dc_{t+1} * f_{t+1}: what c_t gets from c_{t+1}
        dc = np.empty((N, u), A.dtype)
        for t in range(T - 1, -1, -1):
            a, da = A[t], dA[t]
            dh = dH[t] + dh_next
            np.multiply(TC[t], TC[t], out=dc)
            np.subtract(1.0, dc, out=dc)
            dc *= a[:, 2 * u : 3 * u]
            dc *= dh
            dc += carry  # dL/dc_t
            np.multiply(dc, a[:, 3 * u :], out=da[:, :u])  # i: dc * g
            np.multiply(dc, C[t], out=da[:, u : 2 * u])  # f: dc * c_{t-1}
            np.multiply(dh, TC[t], out=da[:, 2 * u : 3 * u])  # o: dh * tanh(c_t)
            np.multiply(dc, a[:, :u], out=da[:, 3 * u :])  # g: dc * i
            da *= D[t]
            np.multiply(dc, a[:, u : 2 * u], out=carry)
            dh_next = da @ U.T
        np.matmul(H[:-1].reshape(-1, u).T, dA.reshape(-1, 4 * u), out=self.grads["U"])
        return self._input_grads(Xt, dA, need_dx)
