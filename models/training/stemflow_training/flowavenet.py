"""FloWaveNet prior over raw waveforms (Frank & Ilse's appendix, after Kim et al.'s FloWaveNet).

Data: x [B, 1, T], mono audio in [-1, 1] at 22.05 kHz, T a multiple of 2**blocks.
Layers in the *encode* direction (x -> z), no channel mixing, no factor-out:
  for each of `blocks` blocks:
    squeeze time by 2: u[b, 2c + k, t'] = u[b, c, 2t' + k]     (channels double)
    `flows` flows of
      ActNorm        u <- u * exp(logs) + bias                    (data-dependent init)
      coupling       (e, o) = even / odd channels (swapped on every other flow: the
                     "binary mask inverted after each flow"); h = WaveNet(e);
                     ls = BOUND * tanh(h_s / BOUND), t = h_t;  o <- o * exp(ls) + t
  z = u  [B, 2**blocks, T / 2**blocks]
WaveNet (non-causal): 1x1 in (C/2 -> W) ; `layers` residual layers of
  p = Conv(W -> 2W, kernel k, dilation 2**l);  y = tanh(p_a) * sigmoid(p_b);
  (r, q) = Conv1x1(W -> 2W)(y);  h <- h + r;  skip <- skip + q
then ReLU, 1x1 (W -> W), ReLU, 1x1 (W -> C) zero-initialised, so a new flow is the identity.

log p(x) = log N(z; 0, I) + sum_couplings sum ls + sum_blocks,flows T_b * sum logs.

Written once against the ops interface (ops.py): JaxOps trains it and is the autodiff
reference, OnnxOps exports the score graph, whose reverse pass is written by hand
(`score_adjoint`, checked against jax.grad in tests/test_flowavenet.py).

A noise-conditioned flow (for annealed Langevin) gives every WaveNet's input convolution one
more input channel, ln sigma constant over time (`in_ws`, zero-initialised).
"""
from dataclasses import dataclass
import math

import numpy as np

from .wavenet_layers import ConfigDict, init_stack, residual_stack, residual_stack_adjoint

BOUND = 2.0   # |log-scale| <= BOUND in every coupling, as in glow.py


@dataclass
class Config(ConfigDict):
    blocks: int = 4
    flows: int = 6
    layers: int = 10
    width: int = 32
    kernel: int = 3
    # Dilations of a WaveNet's layers cycle 1, 2, 4, ... 2**(dilation_cycle - 1).
    dilation_cycle: int = 10

    @property
    def time_multiple(self):
        return 2 ** self.blocks

    def channels(self, block):
        """Channels of the data inside block `block` (after its squeeze)."""
        return 2 ** (block + 1)

    def dilation(self, layer):
        return 2 ** (layer % self.dilation_cycle)



def init_params(cfg, rng, conditioned=False, random_last=0.0):
    """numpy float32 parameters: a list over blocks of lists over flows of dicts.
    `random_last` > 0 gives non-zero output layers (untrained test graphs)."""
    W, k = cfg.width, cfg.kernel
    blocks = []
    for b in range(cfg.blocks):
        C = cfg.channels(b)
        flows = []
        for _ in range(cfg.flows):
            f = {
                'an_logs': np.zeros(C), 'an_bias': np.zeros(C),
                'in_w': rng.standard_normal((W, C // 2, 1)) * math.sqrt(1.0 / (C // 2)),
                'in_b': np.zeros(W),
                'o1_w': rng.standard_normal((W, W, 1)) * math.sqrt(2.0 / W),
                'o1_b': np.zeros(W),
                'o2_w': random_last * rng.standard_normal((C, W, 1)),
                'o2_b': random_last * rng.standard_normal(C),
            }
            f.update(init_stack(rng, W, cfg.layers, k))
            if conditioned:
                f['in_ws'] = np.zeros((W, 1, 1))
            flows.append({kk: np.asarray(v, np.float32) for kk, v in f.items()})
        blocks.append(flows)
    return {'blocks': blocks}


def conditioned(params):
    """The noise-conditioned parameters of a plain flow (zero `in_ws`: the same density at every
    noise level), where noise fine-tuning starts."""
    out = []
    for flows in params['blocks']:
        fl = []
        for f in flows:
            f = dict(f)
            W = np.shape(f['in_w'])[0]
            f['in_ws'] = np.zeros((W, 1, 1), np.float32)
            fl.append(f)
        out.append(fl)
    return {'blocks': out}


def param_count(params):
    return int(sum(np.size(v) for flows in params['blocks'] for f in flows for v in f.values()))


def prepare(cfg, params, ops, xp):
    """Hand the parameters to `ops` as constants (initializers for ONNX, arrays for JAX), with
    exp(logs) and each flow's ActNorm log-det per time step."""
    P = {'blocks': []}
    for b, flows in enumerate(params['blocks']):
        fl = []
        for i, f in enumerate(flows):
            C = int(np.shape(f['an_logs'])[0])
            cv = (lambda a: np.asarray(a, np.float64)) if xp is np else (lambda a: a)
            c = lambda name, a: ops.const(f"b{b}f{i}_{name}", a)
            logs = cv(f['an_logs'])
            q = {
                'an_scale': c('an_scale', xp.exp(logs).reshape(1, C, 1)),
                'an_bias': c('an_bias', cv(f['an_bias']).reshape(1, C, 1)),
                'an_logdet': xp.sum(logs),
            }
            for name, v in f.items():
                if name not in ('an_logs', 'an_bias'):
                    q[name] = c(name, cv(v))
            fl.append(q)
        P['blocks'].append(fl)
    return P


def wavenet(ops, cfg, f, a, half, cond=None):
    """The coupling network on the conditioning half a [B, half, T_b] -> (ls, t, cache), ls
    and t [B, half, T_b] for the other half."""
    h = ops.conv1d(a, f['in_w'], f['in_b'], 1)
    if cond is not None:
        h = ops.add(h, ops.conv1d(cond, f['in_ws'], None, 1))
    skip, gates = residual_stack(ops, f, h, cfg.width, cfg.layers, cfg.dilation)
    r1 = ops.relu(skip)
    r2 = ops.relu(ops.conv1d(r1, f['o1_w'], f['o1_b'], 1))
    out = ops.conv1d(r2, f['o2_w'], f['o2_b'], 1)
    hs, t = ops.split_channels(out, half)
    th = ops.tanh(ops.mul(hs, ops.const('inv_bound', np.float32(1.0 / BOUND))))
    ls = ops.mul(th, ops.const('bound', np.float32(BOUND)))
    return ls, t, dict(gates=gates, skip=skip, r2=r2, th=th)


def wavenet_adjoint(ops, cfg, f, c, g_ls, g_t):
    """The cotangent of the network's input a from those of its outputs ls and t."""
    one = ops.const('one', np.float32(1.0))
    g_hs = ops.mul(g_ls, ops.sub(one, ops.mul(c['th'], c['th'])))
    g_out = ops.concat_channels(g_hs, g_t)
    g_r2 = ops.mul(ops.conv1d_adjoint(g_out, f['o2_w'], 1), ops.positive_mask(c['r2']))
    g_skip = ops.mul(ops.conv1d_adjoint(g_r2, f['o1_w'], 1), ops.positive_mask(c['skip']))
    g_h = residual_stack_adjoint(ops, f, c['gates'], g_skip, cfg.dilation)
    return ops.conv1d_adjoint(g_h, f['in_w'], 1)


def _halves(ops, u, C, swap):
    """(conditioning, transformed) halves: even and odd channels, swapped when `swap`."""
    e, o = ops.split_groups(u, C // 2, 2)
    return (o, e) if swap else (e, o)


def _merge(ops, a, b, C, swap):
    return ops.concat_groups(b, a, C // 2, 2) if swap else ops.concat_groups(a, b, C // 2, 2)


def encode(ops, cfg, P, x, keep=False, log_noise=None):
    """x [B, 1, T] -> z, the per-example sum of the couplings' ls, the ActNorm log-det per
    sample of x, and (keep) what the reverse pass needs. `log_noise` [B]: ln sigma of each
    example, for a noise-conditioned flow."""
    u, ld, caches, an_ld = x, None, [], 0.0
    for b, flows in enumerate(P['blocks']):
        C = cfg.channels(b)
        u = ops.squeeze_time(u, C // 2)
        cond = None if log_noise is None else ops.broadcast_time(log_noise, u)
        for i, f in enumerate(flows):
            u = ops.add(ops.mul(u, f['an_scale']), f['an_bias'])
            an_ld = an_ld + f['an_logdet'] / 2 ** (b + 1)      # per sample of x
            swap = i % 2 == 1
            a, o = _halves(ops, u, C, swap)
            ls, t, cache = wavenet(ops, cfg, f, a, C // 2, cond)
            e = ops.exp(ls)
            oe = ops.mul(o, e)
            u = _merge(ops, a, ops.add(oe, t), C, swap)
            s = ops.sum_per_example(ls)
            ld = s if ld is None else ops.add(ld, s)
            if keep:
                caches.append(dict(cache, e=e, oe=oe))
    return u, ld, an_ld, caches


def _logp(ops, z, ld, an_ld, x):
    """log N(z; 0, I) + ld + T * (an_ld - ln(2 pi) / 2)."""
    from .ops import OnnxOps
    per_sample = an_ld - 0.5 * math.log(2 * math.pi)
    if isinstance(ops, OnnxOps):
        per_sample = ops.const('logp_const_per_sample', np.float32(per_sample))
    half = ops.const('minus_half', np.float32(-0.5))
    lp = ops.add(ops.mul(half, ops.sum_per_example(ops.mul(z, z))), ld)
    return ops.add(lp, ops.mul(ops.time_len(x), per_sample))


def logp(ops, cfg, P, x, log_noise=None):
    z, ld, an_ld, _ = encode(ops, cfg, P, x, log_noise=log_noise)
    return _logp(ops, z, ld, an_ld, x)


def score_adjoint(ops, cfg, P, x, log_noise=None):
    """The encode direction, then its hand-written reverse pass: (d log p / dx [B, 1, T],
    log p(x) [B]). The cotangent of z is -z; every coupling's ls also gets 1 (its log-det
    term). `log_noise` only enters the forward pass."""
    one = ops.const('one', np.float32(1.0))
    z, ld, an_ld, caches = encode(ops, cfg, P, x, keep=True, log_noise=log_noise)
    lp = _logp(ops, z, ld, an_ld, x)
    gu = ops.neg(z)
    k = len(caches)
    for b in reversed(range(cfg.blocks)):
        C = cfg.channels(b)
        flows = P['blocks'][b]
        for i in reversed(range(cfg.flows)):
            k -= 1
            f, c = flows[i], caches[k]
            swap = i % 2 == 1
            ga, go = _halves(ops, gu, C, swap)
            # o' = o e^ls + t: d/do = e^ls, d/dls = o e^ls (+1 from the log-det), d/dt = 1
            g_ls = ops.add(ops.mul(go, c['oe']), one)
            ga = ops.add(ga, wavenet_adjoint(ops, cfg, f, c, g_ls, go))
            gu = _merge(ops, ga, ops.mul(go, c['e']), C, swap)
            gu = ops.mul(gu, f['an_scale'])
        gu = ops.unsqueeze_time(gu, C // 2)
    return gu, lp


# ---------------------------------------------------------------- JAX helpers

def jax_logpx(cfg, params, x, noise=None):
    """log p(x) [B], differentiable in params; `noise` [B]: noise levels of a conditioned flow."""
    import jax.numpy as jnp
    from .ops import JaxOps
    ops = JaxOps()
    P = prepare(cfg, params, ops, jnp)
    return logp(ops, cfg, P, x, log_noise=None if noise is None else jnp.log(noise))


def actnorm_init(cfg, params, x):
    """Data-dependent ActNorm init on the batch x [B, 1, T]: each ActNorm output gets zero mean
    and unit variance per channel. Returns new numpy params."""
    import jax.numpy as jnp
    from .ops import JaxOps
    ops = JaxOps()
    new = {'blocks': [[dict(f) for f in flows] for flows in params['blocks']]}
    u = jnp.asarray(x)
    for b, flows in enumerate(new['blocks']):
        C = cfg.channels(b)
        u = ops.squeeze_time(u, C // 2)
        for i, f in enumerate(flows):
            mean = np.asarray(jnp.mean(u, axis=(0, 2)))
            std = np.asarray(jnp.std(u, axis=(0, 2))) + 1e-6
            f['an_logs'] = (-np.log(std)).astype(np.float32)
            f['an_bias'] = (-mean / std).astype(np.float32)
            P = prepare(cfg, {'blocks': [[f]]}, ops, jnp)['blocks'][0][0]
            # only this flow, applied to u
            u = ops.add(ops.mul(u, P['an_scale']), P['an_bias'])
            swap = i % 2 == 1
            a, o = _halves(ops, u, C, swap)
            ls, t, _ = wavenet(ops, cfg, P, a, C // 2)
            u = _merge(ops, a, ops.add(ops.mul(o, ops.exp(ls)), t), C, swap)
    return new
