//! What a prior's graphs model: magnitude spectrograms or waveforms (the manifest's `domain`).

/// What a prior's graphs model (the manifest's `domain`): magnitude spectrograms on the engine's
/// STFT grid (the default, and every prior before the field existed) or raw mono waveforms at
/// 22.05 kHz (time-domain priors, which ship a `score` graph only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Domain {
    /// `spectrogram` (or no `domain` field): the Glow priors of CONTRACT.md.
    #[default]
    Spectrogram,
    /// `waveform`: a density over samples in [-1, 1].
    Waveform,
}

/// The `domain` value of a waveform prior.
pub const WAVEFORM_DOMAIN: &str = "waveform";
/// The `domain` value of a spectrogram prior (also what an absent field means).
pub const SPECTROGRAM_DOMAIN: &str = "spectrogram";
/// The `time_multiple` values a waveform prior may declare: powers of two in this range.
pub const WAVEFORM_TIME_MULTIPLE: std::ops::RangeInclusive<usize> = 1..=4096;

impl Domain {
    /// The manifest's spelling.
    pub fn name(self) -> &'static str {
        match self {
            Domain::Spectrogram => SPECTROGRAM_DOMAIN,
            Domain::Waveform => WAVEFORM_DOMAIN,
        }
    }
}

impl std::fmt::Display for Domain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
