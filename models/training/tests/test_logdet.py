"""(b) total log-det / log p(s) vs a brute-force jax.jacfwd log|det| on a tiny model
(6 bins x 4 frames, 2 flow steps, group size 4), batch 3, non-zero random weights."""
import numpy as np
import jax
import jax.numpy as jnp

from stemflow_training import glow
from stemflow_training.ops import JaxOps


def tiny():
    cfg = glow.Config(bins=6, steps=2, hidden=5, group_size=4, dilations=(1, 2, 1))
    rng = np.random.default_rng(11)
    params = glow.init_params(cfg, rng, random_last=0.3, random_actnorm=0.3)
    norm = {'mu': rng.standard_normal(6).astype(np.float32),
            'sigma': (0.5 + rng.random(6)).astype(np.float32)}
    ops = JaxOps()
    P = glow.prepare(cfg, jax.tree_util.tree_map(jnp.asarray, params), norm, ops, jnp)
    return cfg, params, norm, ops, P


def test_logp_matches_bruteforce_jacobian():
    cfg, params, norm, ops, P = tiny()
    B, C, T = 3, cfg.bins, 4
    rng = np.random.default_rng(5)
    s = jnp.asarray(np.exp(rng.standard_normal((B, C, T))).astype(np.float32))
    z, logp = glow.encode_s(ops, cfg, P, s)
    # brute force: Jacobian of the whole batch map s -> z, [B*C*T, B*C*T]
    J = jax.jacfwd(lambda s_: glow.encode_s(ops, cfg, P, s_)[0])(s)
    J = np.asarray(J).reshape(B, C * T, B, C * T)
    for b in range(B):
        for b2 in range(B):
            if b2 != b:
                assert np.max(np.abs(J[b, :, b2, :])) == 0.0   # examples are independent
        _, ld = np.linalg.slogdet(J[b, :, b, :].astype(np.float64))
        zb = np.asarray(z[b], np.float64)
        ref = -0.5 * np.sum(zb ** 2) - 0.5 * zb.size * np.log(2 * np.pi) + ld
        assert abs(float(logp[b]) - ref) <= 1e-4 * max(1.0, abs(ref)), (b, float(logp[b]), ref)


def test_decode_logp_consistent_with_encode():
    """log p from the decode direction equals log p from the encode direction, and
    the x-space log-det (training objective) matches the brute-force Jacobian."""
    cfg, params, norm, ops, P = tiny()
    rng = np.random.default_rng(6)
    z = jnp.asarray((0.8 * rng.standard_normal((2, cfg.bins, 4))).astype(np.float32))
    s, lp_dec = glow.decode_logp(ops, cfg, P, z)
    z2, lp_enc = glow.encode_s(ops, cfg, P, s)
    assert np.max(np.abs(np.asarray(z2 - z))) < 1e-4
    assert np.max(np.abs(np.asarray(lp_dec - lp_enc))) < 1e-3
    x = jnp.asarray(rng.standard_normal((2, cfg.bins, 4)).astype(np.float32))
    lpx = glow.jax_logpx(cfg, jax.tree_util.tree_map(jnp.asarray, params), x)
    J = np.asarray(jax.jacfwd(lambda x_: glow.encode_x(ops, cfg, P, x_)[0])(x)).reshape(2, 24, 2, 24)
    zx = np.asarray(glow.encode_x(ops, cfg, P, x)[0], np.float64)
    for b in range(2):
        ref = -0.5 * np.sum(zx[b] ** 2) - 12 * np.log(2 * np.pi) + np.linalg.slogdet(J[b, :, b, :])[1]
        assert abs(float(lpx[b]) - ref) < 1e-4 * max(1.0, abs(ref))
