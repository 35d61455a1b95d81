//! The file format stems are written in: a container (WAV or FLAC) and a sample encoding (16- or
//! 24-bit integer, or 32-bit float), with what each combination can hold. The one owner of those
//! limits: the writers, the CLI's checks and its help text all ask this type.

use std::fmt;
use thiserror::Error;

/// The container of a stem file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Container {
    /// RIFF WAVE: any channel count, 32-bit chunk sizes (4 GiB per file).
    Wav,
    /// FLAC, lossless and about half the size: integer samples only, at most 8 channels.
    Flac,
}

/// How each sample is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SampleDepth {
    /// 16-bit integer, with TPDF dither (CD quality; the stems' sum is exact to about 1e-4).
    Int16,
    /// 24-bit integer (studio masters; quantisation noise near −144 dBFS, no dither).
    Int24,
    /// 32-bit IEEE float: what the engine computes, unclipped and exact.
    Float32,
}

impl SampleDepth {
    /// Bits per sample in the file.
    pub fn bits(self) -> u16 {
        match self {
            SampleDepth::Int16 => 16,
            SampleDepth::Int24 => 24,
            SampleDepth::Float32 => 32,
        }
    }

    /// Bytes per sample in a WAV file.
    pub fn bytes(self) -> u64 {
        u64::from(self.bits() / 8)
    }

    /// The integer full scale (2^(bits−1)), or `None` for float.
    pub fn full_scale(self) -> Option<f64> {
        match self {
            SampleDepth::Float32 => None,
            depth => Some(f64::from(1u32 << (depth.bits() - 1))),
        }
    }
}

/// A combination of container and sample depth that Stemflow writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StemFormat {
    /// WAV or FLAC.
    container: Container,
    /// 16, 24 or 32f.
    depth: SampleDepth,
}

/// A format that cannot be written as asked.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("expected {expected}, found {found}")]
pub struct StemFormatError {
    /// What the format accepts.
    pub expected: String,
    /// What was asked for.
    pub found: String,
}

/// Bytes of sample data a WAV file can hold: its chunk sizes are 32-bit, and the RIFF size also
/// counts the header (hound's headers are under 100 bytes; 4 KiB leaves room).
const WAV_MAX_DATA_BYTES: u64 = u32::MAX as u64 - 4096;

/// Channels a FLAC stream can carry.
const FLAC_MAX_CHANNELS: usize = 8;

/// Sample frames a FLAC stream can count (a 36-bit field in its STREAMINFO).
const FLAC_MAX_FRAMES: u64 = (1 << 36) - 1;

impl StemFormat {
    /// 32-bit float WAV: the default, exactly what the engine computed.
    pub const DEFAULT: StemFormat = StemFormat {
        container: Container::Wav,
        depth: SampleDepth::Float32,
    };

    /// `container` with `depth`, or why they do not go together (FLAC holds integers only).
    pub fn new(container: Container, depth: SampleDepth) -> Result<Self, StemFormatError> {
        if container == Container::Flac && depth == SampleDepth::Float32 {
            return Err(StemFormatError {
                expected: "16- or 24-bit samples in FLAC (it stores integers only)".into(),
                found: "32-bit float".into(),
            });
        }
        Ok(StemFormat { container, depth })
    }

    /// The container's own best depth when none is asked for: float for WAV, 24 bit for FLAC.
    pub fn with_default_depth(container: Container) -> Self {
        let depth = match container {
            Container::Wav => SampleDepth::Float32,
            Container::Flac => SampleDepth::Int24,
        };
        StemFormat { container, depth }
    }

    /// The container.
    pub fn container(self) -> Container {
        self.container
    }

    /// The sample depth.
    pub fn depth(self) -> SampleDepth {
        self.depth
    }

    /// The file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self.container {
            Container::Wav => "wav",
            Container::Flac => "flac",
        }
    }

    /// `<stem>.<extension>`.
    pub fn file_name(self, stem: &str) -> String {
        format!("{stem}.{}", self.extension())
    }

    /// Most channels a file of this format holds.
    pub fn max_channels(self) -> usize {
        match self.container {
            Container::Wav => usize::from(u16::MAX),
            Container::Flac => FLAC_MAX_CHANNELS,
        }
    }

    /// Most sample frames of `channels` channels one file of this format holds.
    pub fn max_frames(self, channels: usize) -> u64 {
        match self.container {
            Container::Wav => WAV_MAX_DATA_BYTES / (self.depth.bytes() * channels.max(1) as u64),
            Container::Flac => FLAC_MAX_FRAMES,
        }
    }

    /// `Ok` if this format holds `channels` channels, else what it holds.
    pub fn check_channels(self, channels: usize) -> Result<(), StemFormatError> {
        if (1..=self.max_channels()).contains(&channels) {
            return Ok(());
        }
        Err(StemFormatError {
            expected: format!("1 to {} channels in {self}", self.max_channels()),
            found: format!("{channels} channels"),
        })
    }
}

impl Default for StemFormat {
    fn default() -> Self {
        StemFormat::DEFAULT
    }
}

impl fmt::Display for StemFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let depth = match self.depth {
            SampleDepth::Int16 => "16-bit",
            SampleDepth::Int24 => "24-bit",
            SampleDepth::Float32 => "32-bit float",
        };
        let container = match self.container {
            Container::Wav => "WAV",
            Container::Flac => "FLAC",
        };
        write!(f, "{depth} {container}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flac_holds_integers_only_and_defaults_to_24_bit() {
        assert!(StemFormat::new(Container::Flac, SampleDepth::Float32).is_err());
        let flac = StemFormat::with_default_depth(Container::Flac);
        assert_eq!(flac.depth(), SampleDepth::Int24);
        assert_eq!(flac.to_string(), "24-bit FLAC");
        assert_eq!(flac.file_name("bass"), "bass.flac");
        assert_eq!(StemFormat::DEFAULT.to_string(), "32-bit float WAV");
    }

    #[test]
    fn limits_follow_container_and_depth() {
        let wav16 = StemFormat::new(Container::Wav, SampleDepth::Int16).unwrap();
        assert_eq!(wav16.max_frames(2), WAV_MAX_DATA_BYTES / 4);
        assert_eq!(StemFormat::DEFAULT.max_frames(2), WAV_MAX_DATA_BYTES / 8);
        // 3.1 h at 48 kHz stereo in 32-bit float.
        assert!(StemFormat::DEFAULT.max_frames(2) as f64 / 48_000.0 / 3600.0 > 3.1);
        let flac = StemFormat::with_default_depth(Container::Flac);
        assert!(flac.check_channels(8).is_ok());
        let e = flac.check_channels(9).unwrap_err();
        assert_eq!(
            e.to_string(),
            "expected 1 to 8 channels in 24-bit FLAC, found 9 channels"
        );
        assert!(StemFormat::DEFAULT.check_channels(0).is_err());
    }
}
