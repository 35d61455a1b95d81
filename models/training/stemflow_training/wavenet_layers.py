"""The residual stack both time-domain models are built on (FloWaveNet's coupling networks and
the autoregressive WaveNet), and its hand-written reverse pass.

Layer l of a stack of width W, parameters f[f'd{l}_w'] [2W, W, k], f[f'd{l}_b'], f[f'r{l}_w']
[2W, W, 1], f[f'r{l}_b']:
    p = Conv(h; d_l, dilation(l));  y = tanh(p_a) * sigmoid(p_b);
    (r, q) = Conv1x1(y; r_l);       h <- h + r;  skip <- skip + q
Written against the ops interface (ops.py). A causal stack passes kernels of 2k - 1 taps whose
last k - 1 are zero (a centred convolution that only looks back), so both use the same Conv and
ConvTranspose.
"""
from dataclasses import asdict

import numpy as np


class ConfigDict:
    """A dataclass config's JSON form (manifest `model`, checkpoints), and back."""

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def sigmoid(ops, a):
    half = ops.const('half', np.float32(0.5))
    return ops.mul(half, ops.add(ops.const('one', np.float32(1.0)), ops.tanh(ops.mul(half, a))))


def residual_stack(ops, f, h, width, layers, dilation):
    """(skip [B, W, T], gates: what the reverse pass needs) of the stack on h [B, W, T]."""
    skip, gates = None, []
    for l in range(layers):
        p = ops.conv1d(h, f[f'd{l}_w'], f[f'd{l}_b'], dilation(l))
        pa, pb = ops.split_channels(p, width)
        ta, sb = ops.tanh(pa), sigmoid(ops, pb)
        r, q = ops.split_channels(ops.conv1d(ops.mul(ta, sb), f[f'r{l}_w'], f[f'r{l}_b'], 1), width)
        h = ops.add(h, r)
        skip = q if skip is None else ops.add(skip, q)
        gates.append((ta, sb))
    return skip, gates


def residual_stack_adjoint(ops, f, gates, g_skip, dilation):
    """The cotangent of the stack's input h from that of its skip sum."""
    one = ops.const('one', np.float32(1.0))
    g_h = None
    for l in reversed(range(len(gates))):
        ta, sb = gates[l]
        # the last layer's residual output is not used after it: its cotangent is zero
        g_res = g_h if g_h is not None else ops.mul(g_skip, ops.const('zero', np.float32(0.0)))
        g_y = ops.conv1d_adjoint(ops.concat_channels(g_res, g_skip), f[f'r{l}_w'], 1)
        g_pa = ops.mul(ops.mul(g_y, sb), ops.sub(one, ops.mul(ta, ta)))
        g_pb = ops.mul(ops.mul(g_y, ta), ops.mul(sb, ops.sub(one, sb)))
        g_p = ops.conv1d_adjoint(ops.concat_channels(g_pa, g_pb), f[f'd{l}_w'], dilation(l))
        g_h = g_p if g_h is None else ops.add(g_h, g_p)
    return g_h


def init_stack(rng, width, layers, kernel):
    """numpy parameters of a stack (He-style scales)."""
    W, k = width, kernel
    f = {}
    for l in range(layers):
        f[f'd{l}_w'] = rng.standard_normal((2 * W, W, k)) * np.sqrt(1.0 / (W * k))
        f[f'd{l}_b'] = np.zeros(2 * W)
        f[f'r{l}_w'] = rng.standard_normal((2 * W, W, 1)) * np.sqrt(1.0 / W)
        f[f'r{l}_b'] = np.zeros(2 * W)
    return f
