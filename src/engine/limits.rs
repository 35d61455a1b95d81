//! The formats and sizes the engine supports, written once: the command line, the plugin, the
//! resampler, the resynthesis and the prior loader all check against these.

use super::bounds::Bounds;
use thiserror::Error;

/// Lowest host sample rate the engine separates, in Hz.
pub const MIN_SAMPLE_RATE: u32 = 8_000;
/// Highest host sample rate the engine separates, in Hz (352.8 and 384 kHz included).
pub const MAX_SAMPLE_RATE: u32 = 384_000;
/// The supported host sample rates, as an interval.
pub const SAMPLE_RATES: Bounds = Bounds::closed(MIN_SAMPLE_RATE as f64, MAX_SAMPLE_RATE as f64);

/// Most bytes a prior's `manifest.json` may have. A shipped one has about 5 kB; a bigger file is
/// refused by its size on disk before it is read.
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;
/// Most bytes one file a manifest lists (a graph, shared weights, an NMF dictionary) may have. The
/// largest shipped file has 7.5 MB and a whole prior stays within 50 MB on disk, so a file past
/// 64 MiB is no prior of this engine; it is refused before it is read into memory.
pub const MAX_PRIOR_FILE_BYTES: u64 = 64 << 20;
/// Most bytes all the files one manifest lists may have together: what loading one prior reads into
/// memory (a shipped prior: 14 MB).
pub const MAX_PRIOR_BYTES: u64 = 256 << 20;

/// Packets of an input a decoder may fail on (each replaced by silence of its length, with a
/// warning) before the file is refused as corrupt: a damaged frame here and there is what ffmpeg
/// and sox play through; more than one packet in four past the first few is no longer audio.
pub const DAMAGED_PACKETS_TOLERATED: DamageTolerance = DamageTolerance { always: 8, one_in: 4 };

/// How many undecodable packets a file may have: up to `always` whatever its length, beyond that
/// at most one packet in `one_in`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DamageTolerance {
    /// Damaged packets accepted in any file.
    pub always: u64,
    /// Beyond `always`, at most one damaged packet in this many.
    pub one_in: u64,
}

impl DamageTolerance {
    /// Whether `damaged` packets out of `seen` (damaged or not) are still tolerated.
    pub fn tolerates(&self, damaged: u64, seen: u64) -> bool {
        damaged <= self.always || damaged * self.one_in <= seen
    }
}

/// A format outside what the engine supports.
#[derive(Debug, Clone, Copy, Error, PartialEq, Eq)]
pub enum FormatError {
    /// A sample rate outside [`SAMPLE_RATES`] (e.g. 0 Hz from a broken header).
    #[error("expected a sample rate between {MIN_SAMPLE_RATE} and {MAX_SAMPLE_RATE} Hz, found {found} Hz")]
    SampleRate {
        /// The rate asked for.
        found: u32,
    },
    /// No channels.
    #[error("expected at least one channel, found 0")]
    NoChannels,
}

/// `Ok` if the engine separates audio at `rate`.
pub fn check_sample_rate(rate: u32) -> Result<(), FormatError> {
    if (MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&rate) {
        Ok(())
    } else {
        Err(FormatError::SampleRate { found: rate })
    }
}

/// `Ok` if the engine separates audio at `rate` with `channels` channels.
pub fn check_format(rate: u32, channels: usize) -> Result<(), FormatError> {
    check_sample_rate(rate)?;
    if channels == 0 {
        return Err(FormatError::NoChannels);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_range_is_inclusive_and_channels_are_needed() {
        for rate in [8_000, 22_050, 44_100, 352_800, 384_000] {
            assert_eq!(check_format(rate, 2), Ok(()));
        }
        assert_eq!(
            check_sample_rate(7_999),
            Err(FormatError::SampleRate { found: 7_999 })
        );
        assert_eq!(
            check_sample_rate(384_001),
            Err(FormatError::SampleRate { found: 384_001 })
        );
        assert_eq!(check_format(44_100, 0), Err(FormatError::NoChannels));
        assert!(SAMPLE_RATES.contains(384_000.0) && !SAMPLE_RATES.contains(0.0));
    }
}
