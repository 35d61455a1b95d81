"""The manifest's `annealing` section of a prior (CONTRACT.md, "Noise-conditioned score
(optional)"): the names of the noise-conditioned score and its weights, and how the section is
written, checked and found again.

Its own module so that both writers of a prior's manifest read it from here: the exporter
(export.py keeps a matching section when it rewrites the manifest, or removes the files) and the
noise-conditioned flow (noise_conditioned.py writes the section), neither importing the other
for it. It imports nothing of the package but files.py.
"""
import json
import os

from .files import listed_file, write_atomic

SECTION = 'annealing'
SCORE_FILE = 'noisy_score.onnx'
WEIGHTS_FILE = 'noisy_weights.bin'
DOMAIN = 'standardised-log-magnitude'


def write_section(prior_dir, section):
    """Adds or replaces the `annealing` section of the prior's manifest.json (last key when
    new), every other key kept in its place and written as export.py writes it."""
    path = os.path.join(prior_dir, 'manifest.json')
    with open(path) as f:
        manifest = json.load(f)
    manifest[SECTION] = section
    write_atomic(path, json.dumps(manifest, indent=2) + '\n', 'w')


def verify_section(prior_dir, section):
    """Checks an `annealing` section as the engine would: plain file names in the prior folder
    whose sha256 match, a descending ladder of positive levels, the domain; ValueError naming
    what is wrong otherwise."""
    for role in ('score', 'weights'):
        e = section.get(role)
        if not isinstance(e, dict) or 'file' not in e or 'sha256' not in e:
            raise ValueError(f"annealing: `{role}` needs `file` and `sha256`")
        listed_file(prior_dir, e, f"annealing.{role}")
    sig = section.get('sigmas')
    if not sig or any(not (v > 0) for v in sig) or any(a <= b for a, b in zip(sig, sig[1:])):
        raise ValueError(f"annealing: sigmas must be positive and strictly descending, not {sig}")
    if section.get('domain') != DOMAIN:
        raise ValueError(f"annealing: domain must be {DOMAIN!r}")
    return section


def existing_section(prior_dir):
    """The `annealing` section of the manifest in `prior_dir` if its files are there and match
    it (a re-export of the same weights keeps it), else None."""
    try:
        with open(os.path.join(prior_dir, 'manifest.json')) as f:
            section = json.load(f).get(SECTION)
        return None if section is None else verify_section(prior_dir, section)
    except (OSError, ValueError, TypeError, AttributeError, json.JSONDecodeError):
        return None
