"""A minimal ctypes binding of libfluidsynth (Debian package `fluidsynth`, libfluidsynth3)
for offline, sample-accurate rendering of note lists to mono float audio.

Keeping one synthesizer per soundfont loaded for the whole run avoids re-reading a
soundfont per part (the MuseScore .sf3 takes ~5 s to load: its samples are Vorbis).
"""
import ctypes
import ctypes.util

import numpy as np

LIB_NAMES = ('libfluidsynth.so.3', 'libfluidsynth.so')
DRUM_CHANNEL = 9


def load_library():
    for name in LIB_NAMES + ((ctypes.util.find_library('fluidsynth') or ''),):
        if not name:
            continue
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


_LIB = None


def lib():
    global _LIB
    if _LIB is None:
        _LIB = load_library()
        if _LIB is None:
            raise RuntimeError("libfluidsynth not found: install the Debian package 'fluidsynth'")
        L = _LIB
        L.new_fluid_settings.restype = ctypes.c_void_p
        L.fluid_settings_setnum.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_double]
        L.fluid_settings_setint.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
        L.new_fluid_synth.restype = ctypes.c_void_p
        L.new_fluid_synth.argtypes = [ctypes.c_void_p]
        L.fluid_synth_sfload.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
        L.fluid_synth_program_select.argtypes = [ctypes.c_void_p] + [ctypes.c_int] * 4
        L.fluid_synth_noteon.argtypes = [ctypes.c_void_p] + [ctypes.c_int] * 3
        L.fluid_synth_noteoff.argtypes = [ctypes.c_void_p] + [ctypes.c_int] * 2
        L.fluid_synth_cc.argtypes = [ctypes.c_void_p] + [ctypes.c_int] * 3
        L.fluid_synth_all_sounds_off.argtypes = [ctypes.c_void_p, ctypes.c_int]
        L.fluid_synth_system_reset.argtypes = [ctypes.c_void_p]
        L.fluid_synth_write_float.argtypes = [ctypes.c_void_p, ctypes.c_int,
                                              ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                                              ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        L.fluid_synth_get_sfont_by_id.restype = ctypes.c_void_p
        L.fluid_synth_get_sfont_by_id.argtypes = [ctypes.c_void_p, ctypes.c_int]
        L.fluid_sfont_get_preset.restype = ctypes.c_void_p
        L.fluid_sfont_get_preset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        L.fluid_synth_reverb_on.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        L.fluid_synth_chorus_on.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        L.fluid_synth_set_gain.argtypes = [ctypes.c_void_p, ctypes.c_float]
        L.fluid_set_log_function.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        L.fluid_synth_add_sfont.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        L.fluid_synth_remove_sfont.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        L.delete_fluid_synth.argtypes = [ctypes.c_void_p]
        for level in range(5):  # silence FluidSynth's own logging
            L.fluid_set_log_function(level, None, None)
    return _LIB


class Synth:
    """A soundfont loaded once; every `render` runs on a fresh synthesizer that borrows it, so
    no reverb/chorus tail or LFO phase carries over from one part to the next (a part's audio
    does not depend on what was rendered before it)."""

    def __init__(self, sf_path, sample_rate=22050):
        L = lib()
        self.sr = sample_rate
        self.settings = L.new_fluid_settings()
        L.fluid_settings_setnum(self.settings, b'synth.sample-rate', float(sample_rate))
        L.fluid_settings_setint(self.settings, b'synth.polyphony', 256)
        L.fluid_settings_setint(self.settings, b'synth.cpu-cores', 1)
        self.synth = L.new_fluid_synth(self.settings)
        self.sfid = L.fluid_synth_sfload(self.synth, sf_path.encode(), 1)
        if self.sfid < 0:
            raise RuntimeError(f"FluidSynth could not load {sf_path}")
        self.sfont = L.fluid_synth_get_sfont_by_id(self.synth, self.sfid)

    def has_preset(self, bank, program):
        return bool(lib().fluid_sfont_get_preset(self.sfont, bank, program))

    def _write(self, n, synth=None):
        L = lib()
        synth = synth or self.synth
        left = np.zeros(n, dtype=np.float32)
        right = np.zeros(n, dtype=np.float32)
        pos = 0
        while pos < n:
            k = min(4096, n - pos)
            L.fluid_synth_write_float(synth, k,
                                      left[pos:].ctypes.data, 0, 1, right[pos:].ctypes.data, 0, 1)
            pos += k
        return 0.5 * (left + right)

    def render(self, notes, program, drums=False, reverb=False, chorus=False, cc=None, tail=1.5, bank=None):
        """notes: (start_s, dur_s, pitch, vel).  Returns mono float32 audio.  `bank` defaults to 128
        for drums (GM percussion) and 0 otherwise; a drum-kit-only soundfont keeps its kit in bank 0."""
        L = lib()
        chan = DRUM_CHANNEL if drums else 0
        synth = L.new_fluid_synth(self.settings)
        sfid = L.fluid_synth_add_sfont(synth, self.sfont)
        if sfid < 0:
            L.delete_fluid_synth(synth)
            raise RuntimeError("FluidSynth could not share a loaded soundfont")
        try:
            bank = (128 if drums else 0) if bank is None else bank
            return self._render(synth, sfid, chan, notes, program, bank, reverb, chorus, cc, tail)
        finally:
            L.fluid_synth_all_sounds_off(synth, -1)
            self._write(256, synth)
            L.fluid_synth_remove_sfont(synth, self.sfont)
            L.delete_fluid_synth(synth)

    def _render(self, synth, sfid, chan, notes, program, bank, reverb, chorus, cc, tail):
        L = lib()
        L.fluid_synth_reverb_on(synth, -1, int(bool(reverb)))
        L.fluid_synth_chorus_on(synth, -1, int(bool(chorus)))
        L.fluid_synth_program_select(synth, chan, sfid, int(bank), int(program))
        for num, val in (cc or {}).items():
            L.fluid_synth_cc(synth, chan, int(num), int(val))
        self._write(256, synth)  # settle; discarded
        events = []
        for s, d, p, v in notes:
            on = int(round(s * self.sr))
            off = int(round((s + d) * self.sr))
            events.append((on, 1, int(p), int(v)))
            events.append((max(off, on + 1), 0, int(p), 0))
        events.sort(key=lambda e: (e[0], e[1]))
        end = (events[-1][0] if events else 0) + int(tail * self.sr)
        out = []
        pos = 0
        for t, kind, p, v in events:
            if t > pos:
                out.append(self._write(t - pos, synth))
                pos = t
            if kind == 1:
                L.fluid_synth_noteon(synth, chan, p, max(1, min(127, v)))
            else:
                L.fluid_synth_noteoff(synth, chan, p)
        if end > pos:
            out.append(self._write(end - pos, synth))
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)
