"""(e) shipped priors: manifest fields per CONTRACT.md, sha256 of every graph, I/O names, size
with the optional sections (the `nmf` section: test_nmf.py; `annealing`: test_noise_conditioned.py)."""
import glob
import hashlib
import json
import os
import re

import onnx
import pytest

PRIORS = os.path.join(os.path.dirname(__file__), '..', '..', 'priors')
DIRS = sorted(d for d in glob.glob(os.path.join(PRIORS, '*')) if os.path.isdir(d))


@pytest.mark.parametrize("d", DIRS, ids=[os.path.basename(d) for d in DIRS])
def test_manifest(d):
    m = json.load(open(os.path.join(d, 'manifest.json')))
    assert m['format'] == 'stemflow-prior' and m['format_version'] == 1
    assert m['stem'] == os.path.basename(d) and re.fullmatch(r'[a-z0-9][a-z0-9_-]*', m['stem'])
    expect = dict(sample_rate=22050, n_fft=1024, hop=256, window='hann-periodic', center='zero',
                  frame_seconds=5.0, frames=432, bins=513, time_multiple=2)
    for k, v in expect.items():
        assert m[k] == v, k
    assert m['magnitude_scaling']['kind'] == 'log-standardized'
    io = {'decode': (['z'], ['s']), 'grad': (['z', 'g', 'gamma'], ['s', 'grad_z', 'logp']),
          'encode': (['s'], ['z', 'logp']), 'score': (['s'], ['score', 'logp'])}
    if 'forward' in m['graphs'] or 'backward' in m['graphs']:
        # the split gradient: both or neither; the saved activations are the forward's extra
        # outputs and exactly the backward's extra inputs
        fw = onnx.load(os.path.join(d, m['graphs']['forward']['file']), load_external_data=False).graph
        bw = onnx.load(os.path.join(d, m['graphs']['backward']['file']), load_external_data=False).graph
        saved = [o.name for o in fw.output][2:]
        assert saved and sorted(saved) == sorted(i.name for i in bw.input[4:])
        io['forward'] = (['z'], ['s', 'logp'] + saved)
        io['backward'] = (['z', 's', 'g', 'gamma'] + [i.name for i in bw.input[4:]], ['grad_z'])
    total = 0
    for role, e in m['graphs'].items():
        assert role in io or role == 'weights', role
        path = os.path.join(d, e['file'])
        assert hashlib.sha256(open(path, 'rb').read()).hexdigest() == e['sha256'], role
        total += os.path.getsize(path)
    for role, (ins, outs) in io.items():
        if role == 'score' and role not in m['graphs']:
            continue  # optional
        path = os.path.join(d, m['graphs'][role]['file'])
        g = onnx.load(path, load_external_data=False).graph
        assert [i.name for i in g.input] == ins and [o.name for o in g.output] == outs
        # A graph may only read weights from the file the manifest lists (and hashes).
        for t in g.initializer:
            if t.data_location == onnx.TensorProto.EXTERNAL:
                location = {kv.key: kv.value for kv in t.external_data}['location']
                assert location == m['graphs']['weights']['file'], (role, t.name, location)
    if 'nmf' in m:   # the optional NMF dictionary (test_nmf.py checks it) counts towards the size
        total += os.path.getsize(os.path.join(d, m['nmf']['file']))
    if 'annealing' in m:   # the optional noise-conditioned score (test_noise_conditioned.py) too
        total += sum(os.path.getsize(os.path.join(d, m['annealing'][r]['file'])) for r in ('score', 'weights'))
    assert total <= 20 * 1000 * 1000


def test_grad_reference_matches_shipped_prior():
    """tests/fixtures/grad_reference was made for the shipped grad.onnx (regenerate with
    python -m stemflow_training.make_reference after retraining)."""
    root = os.path.join(os.path.dirname(__file__), '..', '..', '..')
    ref = json.load(open(os.path.join(root, 'tests', 'fixtures', 'grad_reference', 'reference.json')))
    man = json.load(open(os.path.join(root, ref['prior'], 'manifest.json')))
    assert ref['grad_onnx_sha256'] == man['graphs']['grad']['sha256']
    for f in ref['files'].values():
        path = os.path.join(root, 'tests', 'fixtures', 'grad_reference', f['file'])
        assert hashlib.sha256(open(path, 'rb').read()).hexdigest() == f['sha256']
