"""Noise-conditioned priors (noise_conditioned.py, CONTRACT.md "Noise-conditioned score"):
the zero-initialised noise channel leaves the flow as it was at every level; the exported
noisy_score graph (random non-zero weights, noise channel included) against jax.grad of the JAX
conditioned log-density; the manifest's `annealing` section written, verified and kept by a
re-export, every other file untouched."""
import glob
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import pytest

from stemflow_training import export, glow, noise_conditioned as nc
from stemflow_training.ops import JaxOps
from test_score import TOL, rel, session, x_score

LEVELS = (1.0, 0.2, 0.01)
PRIORS = os.path.join(os.path.dirname(__file__), '..', '..', 'priors')
FIXTURES = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'tests', 'fixtures', 'priors')
ANNEALED = sorted(d for root in (PRIORS, FIXTURES) for d in glob.glob(os.path.join(root, '*', ''))
                  if nc.SECTION in json.load(open(os.path.join(d, 'manifest.json'))))


def jax_constants(cfg, params, norm):
    """prepare() on the JAX backend (float32 arrays)."""
    return glow.prepare(cfg, jax.tree_util.tree_map(jnp.asarray, params), norm, JaxOps(), jnp)


def random_conditioned(seed):
    """A random prior's conditioned parameters with a non-zero noise channel."""
    cfg = glow.Config()
    params, norm = export.random_prior(cfg, seed)
    cp = nc.conditioned(params)
    rng = np.random.default_rng(seed + 100)
    for st in cp['steps']:
        st['c1_ws'] = (0.3 * rng.standard_normal(st['c1_ws'].shape)).astype(np.float32)
    return cfg, cp, norm


def magnitudes(cfg, norm, rng, B, T):
    """exp(sigma_b x + mu_b) of standard normal x: magnitudes around the prior's scale."""
    x = rng.standard_normal((B, cfg.bins, T))
    return np.exp(norm['sigma'][None, :, None] * x + norm['mu'][None, :, None]).astype(np.float32)


def test_zero_noise_channel_is_the_plain_flow():
    """conditioned(params) computes the plain flow's log-density, bit for bit, at every level
    (x space, the training objective, and s space, what the graphs report)."""
    cfg = glow.Config()
    params, norm = export.random_prior(cfg, 3)
    cp = nc.conditioned(params)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, cfg.bins, 8)).astype(np.float32))
    plain = glow.jax_logpx(cfg, params, x)
    P, Pc = jax_constants(cfg, params, norm), jax_constants(cfg, cp, norm)
    s = jnp.asarray(magnitudes(cfg, norm, rng, 2, 8))
    plain_s = glow.encode_s(JaxOps(), cfg, P, s)[1]
    for lv in LEVELS:
        noise = jnp.full(2, lv, jnp.float32)
        np.testing.assert_array_equal(glow.jax_logpx(cfg, cp, x, noise), plain)
        np.testing.assert_array_equal(nc.jax_logp_s(cfg, Pc, s, noise), plain_s)


def test_shipped_prior_recovered_and_conditioned_is_the_prior():
    """A shipped prior's parameters recovered from its graphs (prior_parameters, LU refactored)
    and conditioned give its encode graph's log p at every level (float32 rounding)."""
    d = os.path.join(PRIORS, 'bass')
    cfg, params, norm, _ = nc.prior_parameters(d)
    Pc = jax_constants(cfg, nc.conditioned(params), norm)
    s = magnitudes(cfg, norm, np.random.default_rng(4), 1, 16)
    lp_graph = session(os.path.join(d, 'encode.onnx')).run(None, {'s': s})[1]
    for lv in LEVELS:
        lp = nc.jax_logp_s(cfg, Pc, jnp.asarray(s), jnp.full(1, lv, jnp.float32))
        assert rel(lp, np.asarray(lp_graph, np.float64)) <= 1e-5, lv


def test_noisy_score_onnx_matches_jax_grad():
    """noisy_score.onnx against jax.vjp of the JAX conditioned log p(s) (and, through the
    log-magnitude map, of the x-space density), one level per example, several levels."""
    cfg, cp, norm = random_conditioned(7)
    sess = session(nc.build_score_graph(cfg, cp, norm))
    P = jax_constants(cfg, cp, norm)
    rng = np.random.default_rng(1)
    for levels in ((1.0, 0.01), (0.2, 0.2), (0.05, 0.6)):
        noise = np.asarray(levels, np.float32)
        s = magnitudes(cfg, norm, rng, 2, 16)
        lp_ref, vjp = jax.vjp(lambda s_: nc.jax_logp_s(cfg, P, s_, jnp.asarray(noise)), jnp.asarray(s))
        (score_ref,) = vjp(jnp.ones_like(lp_ref))
        x = (jnp.log(jnp.asarray(s)) - P['mu']) / P['sigma']

        def logpx(x_):
            z, ld = glow.encode_x(JaxOps(), cfg, P, x_, log_noise=jnp.log(jnp.asarray(noise)))
            return jnp.sum(-0.5 * jnp.sum(z * z, axis=(1, 2)) + ld)
        score_x_ref = np.asarray(jax.grad(logpx)(x), np.float64)
        score, lp = sess.run(None, {'s': s, 'sigma': noise})
        score_ref, lp_ref = np.asarray(score_ref, np.float64), np.asarray(lp_ref, np.float64)
        ex = rel(x_score(s, score, P['sigma']), score_x_ref)
        print(f"levels {levels}: score rel {rel(score, score_ref):.2e}, x-space rel {ex:.2e}, "
              f"logp rel {rel(lp, lp_ref):.2e}")
        assert score.shape == s.shape and lp.shape == (2,)
        assert rel(score, score_ref) <= TOL and ex <= TOL and rel(lp, lp_ref) <= TOL


def test_noise_channel_changes_the_density():
    """The graph does read `sigma`: with a non-zero channel, two levels give two densities."""
    cfg, cp, norm = random_conditioned(8)
    sess = session(nc.build_score_graph(cfg, cp, norm))
    s = magnitudes(cfg, norm, np.random.default_rng(2), 1, 8)
    lp1 = sess.run(None, {'s': s, 'sigma': np.array([1.0], np.float32)})[1]
    lp2 = sess.run(None, {'s': s, 'sigma': np.array([0.01], np.float32)})[1]
    assert abs(float(lp1[0] - lp2[0])) > 1e-3 * abs(float(lp1[0]))


def _files(d):
    return {f: open(os.path.join(d, f), 'rb').read() for f in sorted(os.listdir(d))}


def test_annealing_section_round_trip(tmp_path):
    """export_annealed adds two files and the `annealing` section; every other file is byte for
    byte what it was and every other manifest key keeps its value and place; the section
    verifies, names only its own weight file, is kept by `export --reexport`, refused when a
    file is damaged; with the noise channel zero the graph's logp is the score graph's."""
    cfg = glow.Config()
    params, norm = export.random_prior(cfg, 5)
    d = str(tmp_path / 'sine')
    export.export_prior(d, 'sine', cfg, params, norm, {"data": "test"})
    before = _files(d)
    man_before = json.load(open(os.path.join(d, 'manifest.json')))
    training = {'steps': 0, 'minutes': 0.0, 'date': 'test'}
    section = nc.export_annealed(d, cfg, nc.conditioned(params), norm, [0.01, 1.0, 0.1], training)
    after = _files(d)
    assert set(after) == set(before) | {nc.SCORE_FILE, nc.WEIGHTS_FILE}
    for f, data in before.items():
        if f != 'manifest.json':
            assert after[f] == data, f
    man = json.load(open(os.path.join(d, 'manifest.json')))
    assert list(man) == list(man_before) + [nc.SECTION]
    assert all(man[k] == man_before[k] for k in man_before)
    assert man[nc.SECTION] == section and section['sigmas'] == [1.0, 0.1, 0.01]
    assert section['domain'] == 'standardised-log-magnitude' and section['training'] == training
    assert nc.existing_section(d) == section

    g = onnx.load(os.path.join(d, nc.SCORE_FILE), load_external_data=False).graph
    assert [i.name for i in g.input] == ['s', 'sigma'] and [o.name for o in g.output] == ['score', 'logp']
    locations = {kv.value for t in g.initializer if t.data_location == onnx.TensorProto.EXTERNAL
                 for kv in t.external_data if kv.key == 'location'}
    assert locations == {nc.WEIGHTS_FILE}

    s = magnitudes(cfg, norm, np.random.default_rng(3), 1, 8)
    score, lp = session(os.path.join(d, 'score.onnx')).run(None, {'s': s})
    noisy = session(os.path.join(d, nc.SCORE_FILE))
    for lv in LEVELS:
        nscore, nlp = noisy.run(None, {'s': s, 'sigma': np.array([lv], np.float32)})
        np.testing.assert_allclose(nlp, lp, rtol=1e-6)
        assert rel(nscore, np.asarray(score, np.float64)) <= 1e-6

    export.reexport_prior(d)
    assert json.load(open(os.path.join(d, 'manifest.json')))[nc.SECTION] == section
    assert _files(d)[nc.WEIGHTS_FILE] == after[nc.WEIGHTS_FILE]

    with open(os.path.join(d, nc.WEIGHTS_FILE), 'r+b') as f:
        f.seek(100)
        f.write(b'\x01\x02')
    assert nc.existing_section(d) is None
    with pytest.raises(ValueError, match='sha256'):
        nc.verify_section(d, section)


def test_training_export_drops_a_stale_section(tmp_path):
    """A training export (new weights) removes the noise-conditioned flow tuned from the old ones."""
    cfg = glow.Config()
    params, norm = export.random_prior(cfg, 6)
    d = str(tmp_path / 'sine')
    export.export_prior(d, 'sine', cfg, params, norm, {"data": "test"})
    nc.export_annealed(d, cfg, nc.conditioned(params), norm, nc.LADDER, {})
    m = export.export_prior(d, 'sine', cfg, params, norm, {"data": "test"})
    assert nc.SECTION not in m
    assert not os.path.exists(os.path.join(d, nc.SCORE_FILE))
    assert not os.path.exists(os.path.join(d, nc.WEIGHTS_FILE))


@pytest.mark.parametrize("d", ANNEALED, ids=[os.path.basename(os.path.dirname(d)) for d in ANNEALED])
def test_prior_annealing_section(d):
    """Every prior with an `annealing` section (shipped and fixtures): it verifies (files, sha256,
    ladder, domain), the graph's I/O names and external data are the contract's, it was measured
    at every level before and after fine-tuning, and it gives finite outputs at every level."""
    m = json.load(open(os.path.join(d, 'manifest.json')))
    section = nc.verify_section(d, m[nc.SECTION])
    g = onnx.load(os.path.join(d, section['score']['file']), load_external_data=False).graph
    assert [i.name for i in g.input] == ['s', 'sigma'] and [o.name for o in g.output] == ['score', 'logp']
    locations = {kv.value for t in g.initializer if t.data_location == onnx.TensorProto.EXTERNAL
                 for kv in t.external_data if kv.key == 'location'}
    assert locations == {section['weights']['file']}
    measured = section['training']['valid_bits_per_dim']
    assert len(measured['before']) == len(measured['after']) == len(section['sigmas'])
    cfg = export.config_from_manifest(m)
    _, _, norm, _ = nc.prior_parameters(d)
    sess = session(os.path.join(d, section['score']['file']))
    s = magnitudes(cfg, norm, np.random.default_rng(0), 1, 8)
    for lv in section['sigmas']:
        score, lp = sess.run(None, {'s': s, 'sigma': np.array([lv], np.float32)})
        assert np.all(np.isfinite(score)) and np.all(np.isfinite(lp))


def test_fine_tuning_resumes_from_the_saved_step(tmp_path):
    """noise_tune's loop on a tiny flow: the zero channel is where it starts, it checkpoints,
    a resumed run continues from exactly the saved state, the noise channel learns, and the
    per-level validation has one figure per level."""
    from stemflow_training import noise_tune, train
    from test_checkpoint import TINY, assert_identical, _data
    norm, X, noise_x = _data()
    ckdir = str(tmp_path / 'ck')
    args = lambda steps: noise_tune.parse_args(
        ['--prior', str(tmp_path), '--ckpt-dir', ckdir, '--batch', '2', '--crop', '8', '--warmup', '2',
         '--ckpt-every', '2', '--steps', str(steps), '--sigmas', '1.0,0.1,0.01'])
    a = args(3)
    a.noise = 0.1
    params, _ = export.random_prior(TINY, 0)
    state = noise_tune.new_state(a, TINY, params, norm, 'synthetic:test', 'test data')
    assert all(not np.any(st['c1_ws']) for st in state['params']['steps'])
    train_step, eval_fn = train.build_fns(TINY, a.lr, a.steps, a.clip, warmup=a.warmup, conditioned=True)
    before = noise_tune.evaluate_levels(eval_fn, state['params'], X, noise_x, a.sigmas)
    assert len(before) == 3 and before == noise_tune.evaluate_levels(eval_fn, state['params'], X, noise_x, a.sigmas)
    noise_tune.tune_loop(a, state, train_step, X, noise_x, ckdir, 0.0, lambda: 1.0)
    assert state['step'] == 3 and state['info']['minutes'] == 1.0

    a = args(5)
    resumed = train.resume(a, ckdir)
    assert_identical(state, resumed)
    train_step, _ = train.build_fns(TINY, a.lr, a.steps, a.clip, warmup=a.warmup, conditioned=True)
    noise_tune.tune_loop(a, resumed, train_step, X, noise_x, ckdir, 0.0, lambda: 2.0)
    assert resumed['step'] == 5
    assert any(np.any(st['c1_ws']) for st in resumed['params']['steps'])
    assert_identical(resumed, train.latest_ckpt(ckdir))
