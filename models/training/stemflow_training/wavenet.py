"""Autoregressive μ-law WaveNet prior over raw waveforms (Frank & Ilse's appendix), with a
continuous log-density so that it has a score.

Data: x [B, 1, T] in [-1, 1] at 22.05 kHz. y = μ(x) = sign(x)·ln(1 + μ|x|)/ln(1 + μ), μ = 255, and
u = (y + 1)·255/2 in [0, 255]: code k sits at u = k. The network sees y shifted by one sample
(what precedes each sample) through a causal stack of `layers` gated residual layers
(wavenet_layers.py; dilations 1, 2, 4 ... cycling every `dilation_cycle`), repeated `blocks`
times, then ReLU, 1x1 (W -> W), ReLU, 1x1 (W -> 256): logits of the 256 codes of each sample.

A categorical over codes has no gradient in the sample itself, and mixing is linear in x while
the codes are not (the known obstacle for separation with μ-law models). Here the 256
log-probabilities are read as a density that is piecewise linear in log between the codes:
    log p(x_t | x_<t) = Σ_k w_k(u_t)·log softmax(logits_t)_k + ln(255/2) + ln|dy/dx|(x_t),
w_k(u) = max(0, 1 - |k - u|) the linear-interpolation ("two-hot") weights. Training minimises its
negative — the cross-entropy of the logits against the two-hot target, so at a code it is the
usual cross-entropy — and its gradient in x is exact: the interpolation's slope in u_t, the μ-law
map's log-Jacobian, and the reverse pass through the network for the later samples that see x_t.

A noise-conditioned WaveNet (annealed Langevin) gets ln sigma as a second input channel
(`in_ws`, zero-initialised) and models x~ = x + sigma·eps, its own input and target.
"""
from dataclasses import dataclass
import math

import numpy as np

from .wavenet_layers import ConfigDict, init_stack, residual_stack, residual_stack_adjoint

MU = 255.0
CLASSES = 256


@dataclass
class Config(ConfigDict):
    blocks: int = 1
    layers: int = 8
    width: int = 32
    kernel: int = 3
    dilation_cycle: int = 10

    time_multiple = 1

    @property
    def depth(self):
        return self.blocks * self.layers

    def dilation(self, layer):
        return 2 ** ((layer % self.layers) % self.dilation_cycle)

    def receptive_field(self):
        return 1 + sum((self.kernel - 1) * self.dilation(l) for l in range(self.depth))



def init_params(cfg, rng, conditioned=False, random_last=0.0):
    W = cfg.width
    f = {
        'in_w': rng.standard_normal((W, 1, 1)), 'in_b': np.zeros(W),
        'o1_w': rng.standard_normal((W, W, 1)) * math.sqrt(2.0 / W), 'o1_b': np.zeros(W),
        'o2_w': rng.standard_normal((CLASSES, W, 1)) * (random_last or math.sqrt(1.0 / W)),
        'o2_b': np.zeros(CLASSES),
    }
    f.update(init_stack(rng, W, cfg.depth, cfg.kernel))
    if conditioned:
        f['in_ws'] = np.zeros((W, 1, 1))
    return {k: np.asarray(v, np.float32) for k, v in f.items()}


def conditioned(params):
    p = dict(params)
    p['in_ws'] = np.zeros_like(params['in_w'])
    return p


def param_count(params):
    return int(sum(np.size(v) for v in params.values()))


def causal_kernel(w, xp):
    """[O, I, k] -> [O, I, 2k - 1]: a centred kernel whose taps after the centre are zero."""
    k = w.shape[-1]
    return xp.concatenate([w, xp.zeros(w.shape[:2] + (k - 1,), w.dtype)], axis=-1)


def prepare(cfg, params, ops, xp):
    cv = (lambda a: np.asarray(a, np.float32)) if xp is np else (lambda a: a)
    P = {}
    for name, v in params.items():
        v = cv(v)
        if name.startswith('d') and name.endswith('_w'):
            v = causal_kernel(v, xp)
        P[name] = ops.const(name, v)
    P['codes'] = ops.const('codes', np.arange(CLASSES, dtype=np.float32).reshape(1, CLASSES, 1))
    return P


def _mu_law(ops, x):
    """(y, u, ln|dy/dx|, dy/dx) of x."""
    one = ops.const('one', np.float32(1.0))
    mu = ops.const('mu', np.float32(MU))
    ax = ops.abs(x)
    den = ops.add(one, ops.mul(mu, ax))                       # 1 + μ|x|
    y = ops.mul(ops.sign(x), ops.mul(ops.log(den), ops.const('inv_log1pmu', np.float32(1.0 / math.log1p(MU)))))
    y = ops.clip(y, -1.0, 1.0)
    u = ops.mul(ops.add(y, one), ops.const('half_classes', np.float32((CLASSES - 1) / 2.0)))
    dydx = ops.mul(ops.exp(ops.neg(ops.log(den))), ops.const('mu_over_log1pmu', np.float32(MU / math.log1p(MU))))
    return y, u, ops.log(dydx), dydx


def _network(ops, cfg, P, y, cond=None):
    h = ops.conv1d(ops.shift_right(y), P['in_w'], P['in_b'], 1)
    if cond is not None:
        h = ops.add(h, ops.conv1d(cond, P['in_ws'], None, 1))
    skip, gates = residual_stack(ops, P, h, cfg.width, cfg.depth, cfg.dilation)
    r2 = ops.relu(ops.conv1d(ops.relu(skip), P['o1_w'], P['o1_b'], 1))
    logits = ops.conv1d(r2, P['o2_w'], P['o2_b'], 1)
    return logits, dict(gates=gates, skip=skip, r2=r2)


def _terms(ops, cfg, P, x, log_noise=None):
    one = ops.const('one', np.float32(1.0))
    y, u, log_jac, dydx = _mu_law(ops, x)
    cond = None if log_noise is None else ops.broadcast_time(log_noise, x)
    logits, cache = _network(ops, cfg, P, y, cond)
    lsm = ops.log_softmax_channels(logits)
    dist = ops.sub(P['codes'], u)                              # k - u  [B, 256, T]
    w = ops.relu(ops.sub(one, ops.abs(dist)))                  # two-hot weights
    per_t = ops.add(ops.sum_channels(ops.mul(w, lsm)), log_jac)
    const = ops.const('log_half_classes', np.float32(math.log((CLASSES - 1) / 2.0)))
    lp = ops.add(ops.sum_per_example(per_t), ops.mul(ops.time_len(x), const))
    return lp, dict(cache, lsm=lsm, w=w, dist=dist, dydx=dydx, x=x)


def logp(ops, cfg, P, x, log_noise=None):
    return _terms(ops, cfg, P, x, log_noise)[0]


def score_adjoint(ops, cfg, P, x, log_noise=None):
    """(d log p / dx [B, 1, T], log p(x) [B]), the reverse pass written by hand."""
    one = ops.const('one', np.float32(1.0))
    lp, c = _terms(ops, cfg, P, x, log_noise)
    # direct: d/du of Σ_k w_k(u) lsm_k, dw_k/du = sign(k - u) where |k - u| < 1
    inside = ops.positive_mask(ops.sub(one, ops.abs(c['dist'])))
    g_u = ops.sum_channels(ops.mul(ops.mul(ops.sign(c['dist']), inside), c['lsm']))
    # through the network: d/dlogits of Σ_k w_k lsm_k = w - softmax · Σ_k w_k
    sw = ops.sum_channels(c['w'])
    g_logits = ops.sub(c['w'], ops.mul(ops.exp(c['lsm']), sw))
    g_r2 = ops.mul(ops.conv1d_adjoint(g_logits, P['o2_w'], 1), ops.positive_mask(c['r2']))
    g_skip = ops.mul(ops.conv1d_adjoint(g_r2, P['o1_w'], 1), ops.positive_mask(c['skip']))
    g_h = residual_stack_adjoint(ops, P, c['gates'], g_skip, cfg.dilation)
    g_y = ops.shift_left(ops.conv1d_adjoint(g_h, P['in_w'], 1))
    # y = μ(x) clipped to [-1, 1] (only noisy inputs beyond ±1 reach the clip), u = (y + 1)·255/2
    g_y = ops.add(g_y, ops.mul(g_u, ops.const('half_classes', np.float32((CLASSES - 1) / 2.0))))
    inside_y = ops.positive_mask(ops.sub(one, ops.abs(c['x'])))
    g_x = ops.mul(ops.mul(g_y, c['dydx']), inside_y)
    # ln|dy/dx| = ln(μ/ln(1+μ)) - ln(1 + μ|x|)
    mu = ops.const('mu', np.float32(MU))
    g_jac = ops.neg(ops.mul(ops.mul(mu, ops.sign(x)), ops.exp(ops.neg(ops.log(ops.add(one, ops.mul(mu, ops.abs(x))))))))
    return ops.add(g_x, g_jac), lp


def jax_logpx(cfg, params, x, noise=None):
    import jax.numpy as jnp
    from .ops import JaxOps
    ops = JaxOps()
    P = prepare(cfg, params, ops, jnp)
    return logp(ops, cfg, P, x, None if noise is None else jnp.log(noise))
