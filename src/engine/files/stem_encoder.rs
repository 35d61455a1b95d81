//! One stem's encoder on its open file: deinterleaved float samples in, the [`StemFormat`]'s
//! samples out (WAV through hound, FLAC through [`FlacStreamWriter`]), quantised and dithered by a
//! [`Quantizer`] for integer depths.

use super::flac_stream_writer::{FlacStreamWriter, FlacWriteError};
use super::quantizer::Quantizer;
use super::stem_format::{Container, SampleDepth, StemFormat};
use std::fs::File;
use std::io::BufWriter;

/// Most channels a WAVE_FORMAT_EXTENSIBLE header can place on speaker positions; past this,
/// readers that map the channel mask (symphonia among them) refuse the file.
const WAV_SPEAKER_POSITIONS: u16 = 18;

/// Byte offset of `wFormatTag` in hound's WAV header (after `RIFF`, size, `WAVE`, `fmt `, size).
const WAV_FORMAT_TAG_OFFSET: u64 = 20;

/// A WAV file of more channels than there are speaker positions gets the plain format tag (PCM 1
/// or IEEE float 3) in place of WAVE_FORMAT_EXTENSIBLE, keeping the 40-byte format chunk (its
/// extension is then ignored): readers map such a file's channels by count instead of refusing
/// its mask. `path` is a finished WAV written by hound with `channels` channels of `depth`.
pub fn plain_tag_for_many_channels(
    path: &std::path::Path,
    channels: u16,
    depth: SampleDepth,
) -> std::io::Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    if channels <= WAV_SPEAKER_POSITIONS {
        return Ok(());
    }
    let tag: u16 = if depth == SampleDepth::Float32 { 3 } else { 1 };
    let mut file = std::fs::OpenOptions::new().write(true).open(path)?;
    file.seek(SeekFrom::Start(WAV_FORMAT_TAG_OFFSET))?;
    file.write_all(&tag.to_le_bytes())?;
    file.sync_all()
}

/// Why a stem could not be encoded; the caller adds the path.
#[derive(Debug)]
pub enum EncodeError {
    /// Writing the file failed.
    Io(std::io::Error),
    /// The encoder refused the stream (the message says what it expected).
    Format(String),
}

impl From<hound::Error> for EncodeError {
    fn from(e: hound::Error) -> Self {
        match e {
            hound::Error::IoError(e) => EncodeError::Io(e),
            other => EncodeError::Format(other.to_string()),
        }
    }
}

impl From<FlacWriteError> for EncodeError {
    fn from(e: FlacWriteError) -> Self {
        match e {
            FlacWriteError::Io(e) => EncodeError::Io(e),
            FlacWriteError::Encoder(e) => EncodeError::Format(e),
        }
    }
}

/// The writer for one container.
enum Sink {
    /// hound's WAV writer (integer or float samples).
    Wav(hound::WavWriter<BufWriter<File>>),
    /// The streaming FLAC writer (boxed: it carries the encoder's state).
    Flac(Box<FlacStreamWriter<BufWriter<File>>>),
}

/// Encodes one stem into its file.
pub struct StemEncoder {
    /// The container's writer.
    sink: Sink,
    /// Float to integer conversion; `None` for 32-bit float.
    quantizer: Option<Quantizer>,
    /// Interleaved integer samples of the write in progress, reused.
    interleaved: Vec<i32>,
}

impl StemEncoder {
    /// An encoder of `format` writing to `file`; `seed` makes the dither reproducible.
    pub fn new(
        file: File,
        format: StemFormat,
        sample_rate: u32,
        channels: u16,
        seed: u64,
    ) -> Result<Self, EncodeError> {
        let depth = format.depth();
        let out = BufWriter::new(file);
        let sink = match format.container() {
            Container::Wav => {
                let spec = hound::WavSpec {
                    channels,
                    sample_rate,
                    bits_per_sample: depth.bits(),
                    sample_format: match depth {
                        SampleDepth::Float32 => hound::SampleFormat::Float,
                        _ => hound::SampleFormat::Int,
                    },
                };
                Sink::Wav(hound::WavWriter::new(out, spec)?)
            }
            Container::Flac => Sink::Flac(Box::new(FlacStreamWriter::new(
                out,
                sample_rate,
                usize::from(channels),
                depth.bits(),
            )?)),
        };
        let quantizer = (depth != SampleDepth::Float32).then(|| Quantizer::new(depth, seed));
        Ok(StemEncoder {
            sink,
            quantizer,
            interleaved: Vec::new(),
        })
    }

    /// Appends `frames` sample frames given as one slice per channel.
    pub fn write(&mut self, channels: &[&[f32]], frames: usize) -> Result<(), EncodeError> {
        match (&mut self.sink, &mut self.quantizer) {
            (Sink::Wav(writer), None) => {
                for i in 0..frames {
                    for c in channels {
                        writer.write_sample(c[i])?;
                    }
                }
            }
            (sink, Some(quantizer)) => {
                self.interleaved.clear();
                for i in 0..frames {
                    for c in channels {
                        self.interleaved.push(quantizer.quantize(c[i]));
                    }
                }
                match sink {
                    Sink::Wav(writer) => {
                        for &s in &self.interleaved {
                            writer.write_sample(s)?;
                        }
                    }
                    Sink::Flac(writer) => writer.write_interleaved(&self.interleaved)?,
                }
            }
            (Sink::Flac(_), None) => unreachable!("StemFormat refuses float FLAC"),
        }
        Ok(())
    }

    /// Samples clipped to the integer range so far (0 for float).
    pub fn clipped(&self) -> u64 {
        self.quantizer.as_ref().map_or(0, Quantizer::clipped)
    }

    /// Completes the file's headers and flushes it.
    pub fn finish(self) -> Result<(), EncodeError> {
        match self.sink {
            Sink::Wav(writer) => writer.finalize()?,
            Sink::Flac(writer) => {
                writer.finish()?;
            }
        }
        Ok(())
    }
}
