"""File helpers shared by the exporter, the renderer and the evaluation tools."""
import hashlib
import os


def sha256(path):
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def write_atomic(path, data, mode='wb'):
    """Writes `data` to `path` through a temporary file beside it and os.replace, so a reader
    never sees a half-written file (manifests, dictionaries, weight files)."""
    tmp = path + '.tmp'
    with open(tmp, mode) as f:
        f.write(data)
    os.replace(tmp, path)


def listed_file(prior_dir, entry, what):
    """The path of a file a manifest lists as {file, sha256} in `prior_dir`, after the engine's
    checks: a plain file name, the file there, its sha256 the listed one; ValueError naming
    `what` (the manifest section) otherwise."""
    path = os.path.join(prior_dir, entry['file'])
    if os.path.basename(entry['file']) != entry['file'] or not os.path.isfile(path):
        raise ValueError(f"{what}: no file {entry['file']} in {prior_dir}")
    if sha256(path) != entry['sha256']:
        raise ValueError(f"{what}: sha256 of {path} does not match the manifest")
    return path
