"""Glow-1d prior over standardised log-magnitude spectrograms.

Data space: x[b, t] = (ln(|X[b, t]| + F) - mu_b) / sigma_b, tensors [B, C, T] (C = 513
bins as channels, T time).  Generative direction f: z -> x -> s = exp(sigma_b x + mu_b).

Layers in the *encode* direction (x -> z), one level, no multi-scale:
  squeeze time by 2:  u[b, 2c + k, t'] = x[b, c, 2t' + k]        -> [B, 2C, T/2]
  K steps of
    ActNorm       u <- u * exp(logs) + bias              (data-dependent init)
    grouped 1x1   u_g <- W_g u_g on contiguous groups of `group_size` channels
    coupling      (a, b) = split_groups(u): in every group the first half of the
                  channels is `a`, the second half `b` (so each 1x1 group spans
                  both coupling halves - equivalent to interleaved groups plus a
                  fixed permutation).  h = NN(a);  NN = Conv(C->H, k3, d1) ReLU
                  Conv(H->H, k3, d2) ReLU Conv(H->2C, k3, d3) (last one zero-init)
                  hs, t = h[:, :C], h[:, C:];  ls = BOUND * tanh(hs / BOUND)
                  b <- b * exp(ls) + t
  unsqueeze.
The decode direction inverts each layer; its multiplicative factor exp(-ls) is
bounded by exp(BOUND) both ways, which keeps the latent search stable.

log p(s) = log N(z; 0, I) + log|det dz/dx| - sum_{b,t} (ln sigma_b + ln s[b, t]).
log|det dz/dx| = sum_steps [ T/2 * (sum logs + sum_g ln|det W_g|) + sum ls ]; every term
is per example (the constant terms scale with the time length, as the coupling
terms do) - see tests/test_logdet.py.
"""
from dataclasses import dataclass, field, asdict
import math
import numpy as np

BOUND = 2.0          # |log-scale| <= BOUND in every coupling
ENCODE_LOG_FLOOR = 1e-30  # encode graph: ln(max(s, 1e-30))


@dataclass
class Config:
    bins: int = 513
    steps: int = 8
    hidden: int = 32
    group_size: int = 38
    dilations: tuple = (1, 2, 4)
    kernel: int = 3
    floor: float = 1e-5

    @property
    def channels(self):
        return 2 * self.bins

    @property
    def groups(self):
        return self.channels // self.group_size

    def check(self):
        assert self.channels % self.group_size == 0 and self.group_size % 2 == 0, \
            f"group_size {self.group_size} must be even and divide {self.channels}"

    def to_dict(self):
        d = asdict(self)
        d['dilations'] = list(self.dilations)
        return d

    @staticmethod
    def from_dict(d):
        d = dict(d)
        d['dilations'] = tuple(d['dilations'])
        return Config(**d)


def param_count(params):
    """Trainable parameters (L and U counted as their triangles)."""
    n = 0
    for st in params['steps']:
        for k, v in st.items():
            if k in FIXED:
                continue
            sz = int(np.prod(np.shape(v)))
            if k in ('W_L', 'W_U'):
                G, gs, _ = np.shape(v)
                sz = G * gs * (gs - 1) // 2
            n += sz
    return n


def lu_init(rng, G, gs):
    """Glow's LU parametrisation of each 1x1 group matrix, started at a random
    rotation: W = P L (U + diag(sign * exp(logs))); L unit lower, U strictly upper.
    P and sign are fixed (the training step stops their gradients)."""
    return lu_params([np.linalg.qr(rng.standard_normal((gs, gs)))[0] for _ in range(G)])


def lu_params(matrices):
    """The LU parameters (lu_init's) of given group matrices [G, gs, gs] (scipy.linalg.lu):
    how a trained flow's 1x1 convolutions are read back from exported graphs."""
    import scipy.linalg
    out = {k: [] for k in ('W_P', 'W_L', 'W_U', 'W_logs', 'W_sign')}
    for w in matrices:
        p, l, u = scipy.linalg.lu(w)
        d = np.diag(u)
        out['W_P'].append(p)
        out['W_L'].append(np.tril(l, -1))
        out['W_U'].append(np.triu(u, 1))
        out['W_logs'].append(np.log(np.abs(d)))
        out['W_sign'].append(np.sign(d))
    return {k: np.stack(v) for k, v in out.items()}


FIXED = ('W_P', 'W_sign')   # not trained


def group_matrix(st, xp):
    """W [G, gs, gs] and sum_g ln|det W_g| from the LU parameters."""
    P, L, U, logs, sign = st['W_P'], st['W_L'], st['W_U'], st['W_logs'], st['W_sign']
    if xp is not np:
        import jax
        P, sign = jax.lax.stop_gradient(P), jax.lax.stop_gradient(sign)
    gs = L.shape[-1]
    eye = xp.eye(gs)
    low = xp.tril(xp.ones((gs, gs)), -1)
    Lm = L * low + eye
    Um = U * low.T + eye[None] * (sign * xp.exp(logs))[:, None, :]
    return xp.matmul(P, xp.matmul(Lm, Um)), xp.sum(logs)


def init_params(cfg, rng, random_last=0.0, random_actnorm=0.0):
    """numpy float32 parameters.  random_last > 0 gives non-zero last coupling
    layers (used for untrained test graphs)."""
    cfg.check()
    C2, C, H, G, gs, k = cfg.channels, cfg.bins, cfg.hidden, cfg.groups, cfg.group_size, cfg.kernel
    steps = []
    for _ in range(cfg.steps):
        st = {
            'an_bias': random_actnorm * rng.standard_normal(C2),
            'an_logs': random_actnorm * rng.standard_normal(C2),
            **lu_init(rng, G, gs),
            'c1_w': rng.standard_normal((H, C, k)) * math.sqrt(1.0 / (C * k)),
            'c1_b': np.zeros(H),
            'c2_w': rng.standard_normal((H, H, k)) * math.sqrt(2.0 / (H * k)),
            'c2_b': np.zeros(H),
            'c3_w': random_last * rng.standard_normal((C2, H, k)),
            'c3_b': random_last * rng.standard_normal(C2),
        }
        if random_last:
            st['c1_b'] = 0.1 * rng.standard_normal(H)
            st['c2_b'] = 0.1 * rng.standard_normal(H)
        steps.append({kk: np.asarray(v, np.float32) for kk, v in st.items()})
    return {'steps': steps}


def prepare(cfg, params, norm, ops, xp):
    """Derive the constants the layers use (exp(logs), W^-1, log-dets) and hand
    them to `ops` (initializers for ONNX, arrays for JAX).  xp is numpy (float64
    derivation, for export) or jax.numpy (differentiable, for training)."""
    from .ops import OnnxOps
    onnx = isinstance(ops, OnnxOps)
    C2, G, gs = cfg.channels, cfg.groups, cfg.group_size
    P = {'steps': []}
    const_T = 0.0  # per-time-frame constant of log p_x
    for i, st in enumerate(params['steps']):
        f = (lambda a: np.asarray(a, np.float64)) if xp is np else (lambda a: a)
        logs = f(st['an_logs'])
        W, ldW = group_matrix({k: f(st[k]) for k in ('W_P', 'W_L', 'W_U', 'W_logs', 'W_sign')}, xp)
        Winv = xp.linalg.inv(W)
        const_T = const_T + 0.5 * (xp.sum(logs) + ldW)

        def gw(w):
            return w.reshape(G * gs, gs, 1) if onnx else w
        c = lambda name, a: ops.const(f"s{i}_{name}", a)
        P['steps'].append({
            'an_scale': c('an_scale', xp.exp(logs).reshape(1, C2, 1)),
            'an_iscale': c('an_iscale', xp.exp(-logs).reshape(1, C2, 1)),
            'an_bias': c('an_bias', f(st['an_bias']).reshape(1, C2, 1)),
            'W': c('W', gw(W)),
            'Winv': c('Winv', gw(Winv)),
            'c1_w': c('c1_w', f(st['c1_w'])), 'c1_b': c('c1_b', f(st['c1_b'])),
            'c2_w': c('c2_w', f(st['c2_w'])), 'c2_b': c('c2_b', f(st['c2_b'])),
            'c3_w': c('c3_w', f(st['c3_w'])), 'c3_b': c('c3_b', f(st['c3_b'])),
        })
        if 'c1_ws' in st:   # a noise-conditioned flow (noise_conditioned.py)
            P['steps'][-1]['c1_ws'] = c('c1_ws', f(st['c1_ws']))
    C = cfg.bins
    const_x = const_T - 0.5 * C * math.log(2 * math.pi)
    P['const_x'] = const_x                       # per frame, x-space density
    if norm is not None:
        mu = xp.asarray(norm['mu'], dtype=np.float64 if xp is np else None)
        sigma = xp.asarray(norm['sigma'], dtype=np.float64 if xp is np else None)
        P['const_s'] = const_x - xp.sum(xp.log(sigma))  # per frame, s-space (without -sum ln s)
        P['mu'] = ops.const('mu', mu.reshape(1, C, 1))
        P['sigma'] = ops.const('sigma', sigma.reshape(1, C, 1))
        P['inv_sigma'] = ops.const('inv_sigma', (1.0 / sigma).reshape(1, C, 1))
    return P


def _nn(ops, cfg, st, a, cond=None):
    """The coupling network on the conditioning half a. `cond` [B, 1, T/2] (a noise-conditioned
    flow's ln(noise level), noise_conditioned.py) is its first convolution's extra input channel,
    whose weights are the step's `c1_ws` [H, 1, k]: conv(concat(a, cond)) written as the sum of
    the two convolutions, so the reverse passes, which need the cotangent of a only, stay as
    they are."""
    d1, d2, d3 = cfg.dilations
    pre = ops.conv1d(a, st['c1_w'], st['c1_b'], d1)
    if cond is not None:
        pre = ops.add(pre, ops.conv1d(cond, st['c1_ws'], None, d1))
    h1 = ops.relu(pre)
    h2 = ops.relu(ops.conv1d(h1, st['c2_w'], st['c2_b'], d2))
    h = ops.conv1d(h2, st['c3_w'], st['c3_b'], d3)
    hs, t = ops.split_channels(h, cfg.bins)
    th = ops.tanh(ops.mul(hs, ops.const('inv_bound', np.float32(1.0 / BOUND))))
    ls = ops.mul(th, ops.const('bound', np.float32(BOUND)))
    return ls, t, (h1, h2, th)


def _nn_adjoint(ops, cfg, st, c, g_h):
    """The coupling network's reverse pass: the cotangent of its input a from that of its output
    h = (hs, t), with the hidden activations c['h1'], c['h2'] of its forward run."""
    d1, d2, d3 = cfg.dilations
    g2 = ops.mul(ops.conv1d_adjoint(g_h, st['c3_w'], d3), ops.positive_mask(c['h2']))
    g1 = ops.mul(ops.conv1d_adjoint(g2, st['c2_w'], d2), ops.positive_mask(c['h1']))
    return ops.conv1d_adjoint(g1, st['c1_w'], d1)


def encode_step(ops, cfg, st, u, keep=False, cond=None):
    """One step x -> z. With `keep`, also returns what its reverse pass needs: the coupling
    network's hidden activations h1, h2, its tanh th, e = exp(ls) and be = b * e. `cond`: the
    coupling network's conditioning channel (_nn)."""
    G, gs = cfg.groups, cfg.group_size
    u = ops.add(ops.mul(u, st['an_scale']), st['an_bias'])
    u = ops.group_matmul(u, st['W'])
    a, b = ops.split_groups(u, G, gs)
    ls, t, (h1, h2, th) = _nn(ops, cfg, st, a, cond)
    e = ops.exp(ls)
    be = ops.mul(b, e)
    b = ops.add(be, t)
    out = ops.concat_groups(a, b, G, gs), ops.sum_per_example(ls)
    if keep:
        return out + (dict(h1=h1, h2=h2, th=th, e=e, be=be),)
    return out


def encode_x(ops, cfg, P, x, keep=False, log_noise=None):
    """x [B, C, T] -> z [B, C, T], data-dependent log-det part (sum of coupling ls) [B]; with
    `keep`, also every step's cache (encode_step). `log_noise` [B]: ln of the noise level of a
    noise-conditioned flow (its steps have `c1_ws`), fed to every coupling network."""
    u = ops.squeeze_time(x, cfg.bins)
    cond = None if log_noise is None else ops.broadcast_time(log_noise, u)
    ld = None
    caches = []
    for st in P['steps']:
        u, l, *cache = encode_step(ops, cfg, st, u, keep, cond)
        caches += cache
        ld = l if ld is None else ops.add(ld, l)
    z = ops.unsqueeze_time(u, cfg.bins)
    return (z, ld, caches) if keep else (z, ld)


def decode_x(ops, cfg, P, z, keep=False):
    """z -> x; returns x, sum of coupling ls [B] (= data part of log|det dz/dx|), caches."""
    G, gs = cfg.groups, cfg.group_size
    u = ops.squeeze_time(z, cfg.bins)
    ld = None
    caches = [None] * len(P['steps'])
    for k in reversed(range(len(P['steps']))):
        st = P['steps'][k]
        a, y = ops.split_groups(u, G, gs)
        ls, t, (h1, h2, th) = _nn(ops, cfg, st, a)
        e = ops.exp(ops.neg(ls))
        xb = ops.mul(ops.sub(y, t), e)
        u = ops.concat_groups(a, xb, G, gs)
        u = ops.group_matmul(u, st['Winv'])
        u = ops.mul(ops.sub(u, st['an_bias']), st['an_iscale'])
        l = ops.sum_per_example(ls)
        ld = l if ld is None else ops.add(ld, l)
        if keep:
            caches[k] = dict(h1=h1, h2=h2, th=th, e=e, xb=xb)
    return ops.unsqueeze_time(u, cfg.bins), ld, caches


def _const_term(ops, P, z, key):
    from .ops import OnnxOps
    c = P[key]
    if isinstance(ops, OnnxOps):
        c = ops.const('logp_const_per_frame', np.float32(c))
    return ops.mul(ops.time_len(z), c)


def logp_terms(ops, P, z, ld, v):
    """log p(s) = -1/2 |z|^2 + ld - sum v + T * const_s, v = ln s."""
    half = ops.const('minus_half', np.float32(-0.5))
    lp = ops.add(ops.mul(half, ops.sum_per_example(ops.mul(z, z))), ld)
    lp = ops.sub(lp, ops.sum_per_example(v))
    return ops.add(lp, _const_term(ops, P, z, 'const_s'))


def decode_s(ops, cfg, P, z, keep=False):
    x, ld, caches = decode_x(ops, cfg, P, z, keep)
    v = ops.add(ops.mul(x, P['sigma']), P['mu'])   # ln s
    s = ops.exp(v)
    return s, v, ld, caches


def decode_logp(ops, cfg, P, z):
    """Differentiable (for JAX) s(z) and log p(s(z))."""
    s, v, ld, _ = decode_s(ops, cfg, P, z)
    return s, logp_terms(ops, P, z, ld, v)


SAVED_PER_STEP = ('h1', 'h2', 'th', 'xb')


def saved_names(cfg):
    """Names of the tensors the forward graph keeps for the backward graph, in order
    (CONTRACT.md, "forward" and "backward"): per coupling step k, its network's two hidden
    activations, its tanh and the transformed half it decoded."""
    return [f"saved_{k}_{n}" for k in range(cfg.steps) for n in SAVED_PER_STEP]


def forward_saved(ops, cfg, P, z):
    """The decode direction once, keeping what the reverse pass needs.
    Returns s, log p(s) [B] and {name: tensor} of the saved activations."""
    s, v, ld, caches = decode_s(ops, cfg, P, z, keep=True)
    logp = logp_terms(ops, P, z, ld, v)
    saved = {f"saved_{k}_{n}": c[n] for k, c in enumerate(caches) for n in SAVED_PER_STEP}
    return s, logp, saved


def backward_saved(ops, cfg, P, z, s, saved, g, gamma):
    """Hand-written reverse pass from the forward's saved activations.
    Returns grad_z = J^T g - gamma * d logp/dz."""
    G, gs = cfg.groups, cfg.group_size
    one = ops.const('one', np.float32(1.0))
    # L = <g, s> - gamma * logp.   dL/dx = sigma (g s + gamma)   (ds/dx = sigma s; logp has -sum v)
    gx = ops.mul(ops.add(ops.mul(g, s), gamma), P['sigma'])
    gu = ops.squeeze_time(gx, cfg.bins)
    for k in range(len(P['steps'])):         # decode ran k = K-1 .. 0
        st = P['steps'][k]
        c = {n: saved[f"saved_{k}_{n}"] for n in SAVED_PER_STEP}
        # e = exp(-ls): the fused graph has it; from saved tensors it is recomputed from tanh
        # with the decode direction's own operations (so both give the same bits)
        e = saved.get(f"e_{k}")
        if e is None:
            e = ops.exp(ops.neg(ops.mul(c['th'], ops.const('bound', np.float32(BOUND)))))
        gu = ops.mul(gu, st['an_iscale'])
        gu = ops.group_matmul(gu, st['Winv'], transpose=True)
        ga, gxb = ops.split_groups(gu, G, gs)
        gy = ops.mul(gxb, e)
        # xb = (y - t) e^{-ls}: d/dls = -xb; logp contains +sum ls -> cotangent -gamma
        g_ls = ops.sub(ops.neg(ops.mul(gxb, c['xb'])), gamma)
        g_hs = ops.mul(g_ls, ops.sub(one, ops.mul(c['th'], c['th'])))
        g_h = ops.concat_channels(g_hs, ops.neg(gy))
        ga = ops.add(ga, _nn_adjoint(ops, cfg, st, c, g_h))
        gu = ops.concat_groups(ga, gy, G, gs)
    return ops.add(ops.unsqueeze_time(gu, cfg.bins), ops.mul(gamma, z))


def grad_adjoint(ops, cfg, P, z, g, gamma):
    """Forward then reverse pass in one graph.  Returns s, grad_z = J^T g - gamma * d logp/dz, logp."""
    s, v, ld, caches = decode_s(ops, cfg, P, z, keep=True)
    logp = logp_terms(ops, P, z, ld, v)
    saved = {f"saved_{k}_{n}": c[n] for k, c in enumerate(caches) for n in SAVED_PER_STEP}
    saved.update({f"e_{k}": c['e'] for k, c in enumerate(caches)})
    return s, backward_saved(ops, cfg, P, z, s, saved, g, gamma), logp


def encode_s(ops, cfg, P, s, log_noise=None):
    """s -> z and log p(s) (encode graph); `log_noise` as in encode_x."""
    v = ops.log(ops.maximum(s, ENCODE_LOG_FLOOR))
    x = ops.mul(ops.sub(v, P['mu']), P['inv_sigma'])
    z, ld = encode_x(ops, cfg, P, x, log_noise=log_noise)
    return z, logp_terms(ops, P, z, ld, v)


def score_adjoint(ops, cfg, P, s, log_noise=None):
    """The encode direction, then its hand-written reverse pass (score graph).
    Returns the score d log p(s)/ds [B, C, T] and log p(s) [B], the encode graph's logp.
    `log_noise` [B] (a noise-conditioned flow, as in encode_x) is an input the score is not
    taken with respect to: it only enters the forward pass.

    log p(s) = -1/2 |z|^2 + sum_steps sum ls - sum v + T * const_s, v = ln max(s, floor),
    x = (v - mu) / sigma, z = encode_x(x): the cotangent of z is -z, that of every coupling's
    ls is 1 (its log-det term, on top of what flows back through z), that of v is -1 besides
    what flows back through x, and dv/ds = 1/s where s exceeds the floor, 0 below it."""
    G, gs = cfg.groups, cfg.group_size
    one = ops.const('one', np.float32(1.0))
    v = ops.log(ops.maximum(s, ENCODE_LOG_FLOOR))
    x = ops.mul(ops.sub(v, P['mu']), P['inv_sigma'])
    z, ld, caches = encode_x(ops, cfg, P, x, keep=True, log_noise=log_noise)
    logp = logp_terms(ops, P, z, ld, v)
    gu = ops.squeeze_time(ops.neg(z), cfg.bins)
    for k in reversed(range(len(P['steps']))):     # encode ran k = 0 .. K-1
        st, c = P['steps'][k], caches[k]
        ga, gb = ops.split_groups(gu, G, gs)
        # b' = b e^ls + t: d/db = e^ls, d/dls = b e^ls, d/dt = 1; log p has + sum ls
        g_ls = ops.add(ops.mul(gb, c['be']), one)
        g_hs = ops.mul(g_ls, ops.sub(one, ops.mul(c['th'], c['th'])))
        g_h = ops.concat_channels(g_hs, gb)
        ga = ops.add(ga, _nn_adjoint(ops, cfg, st, c, g_h))
        gu = ops.concat_groups(ga, ops.mul(gb, c['e']), G, gs)
        gu = ops.group_matmul(gu, st['W'], transpose=True)
        gu = ops.mul(gu, st['an_scale'])
    gx = ops.unsqueeze_time(gu, cfg.bins)
    gv = ops.sub(ops.mul(gx, P['inv_sigma']), one)
    above = ops.positive_mask(ops.sub(s, ops.const('floor', np.float32(ENCODE_LOG_FLOOR))))
    return ops.mul(ops.mul(gv, ops.exp(ops.neg(v))), above), logp


# ---------------------------------------------------------------- JAX helpers

def jax_logpx(cfg, params, x, noise=None):
    """x-space log density [B] (training objective), differentiable in params; `noise` [B]: the
    noise levels of a noise-conditioned flow's examples (noise_conditioned.py)."""
    import jax.numpy as jnp
    from .ops import JaxOps
    ops = JaxOps()
    P = prepare(cfg, params, None, ops, jnp)
    z, ld = encode_x(ops, cfg, P, x, log_noise=None if noise is None else jnp.log(noise))
    return -0.5 * jnp.sum(z * z, axis=(1, 2)) + ld + x.shape[-1] * P['const_x']


def jax_actnorm_init(cfg, params, x):
    """Data-dependent ActNorm init: each ActNorm output gets zero mean, unit
    variance per channel on the batch x.  Returns new params (numpy)."""
    import jax.numpy as jnp
    from .ops import JaxOps
    ops = JaxOps()
    new = {'steps': []}
    u = ops.squeeze_time(jnp.asarray(x), cfg.bins)
    for st in params['steps']:
        st = dict(st)
        m = jnp.mean(u, axis=(0, 2))
        sd = jnp.std(u, axis=(0, 2)) + 1e-6
        st['an_logs'] = np.asarray(-jnp.log(sd), np.float32)
        st['an_bias'] = np.asarray(-m / sd, np.float32)
        new['steps'].append(st)
        P = prepare(cfg, {'steps': [st]}, None, ops, jnp)
        u, _ = encode_step(ops, cfg, P['steps'][0], u)
    return new
