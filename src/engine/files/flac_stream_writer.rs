//! A FLAC file written as the samples arrive, with memory bounded by one block: flacenc encodes
//! each 4096-sample block into a frame that goes straight to the file, and the STREAMINFO header
//! (sizes, total length, MD5) is written last, over the placeholder at the start of the file.

use flacenc::bitsink::ByteSink;
use flacenc::component::{BitRepr, Stream, StreamInfo};
use flacenc::config;
use flacenc::error::{Verified, Verify};
use flacenc::source::{Context, Fill, FrameBuf};
use std::io::{Seek, SeekFrom, Write};

/// Samples per channel in every frame but the last (the reference encoder's default).
const BLOCK_SIZE: usize = 4096;

/// Why a FLAC stream could not be written.
#[derive(Debug)]
pub enum FlacWriteError {
    /// The file could not be written.
    Io(std::io::Error),
    /// The encoder refused its input (a format FLAC cannot hold, or a sample out of range).
    Encoder(String),
}

impl From<std::io::Error> for FlacWriteError {
    fn from(e: std::io::Error) -> Self {
        FlacWriteError::Io(e)
    }
}

/// An open FLAC stream on `W`.
pub struct FlacStreamWriter<W: Write + Seek> {
    /// Where the stream goes.
    out: W,
    /// The encoder's settings (verified once).
    config: Verified<config::Encoder>,
    /// Rate, channels, depth, and what the frames so far add up to.
    info: StreamInfo,
    /// Interleaved samples of the block being gathered.
    pending: Vec<i32>,
    /// The block handed to the encoder.
    frame_buf: FrameBuf,
    /// The running MD5 and frame count flacenc keeps for the header.
    context: Context,
    /// Channels per sample frame.
    channels: usize,
    /// Smallest and largest encoded frame, in bytes.
    frame_bytes: Option<(usize, usize)>,
    /// The encoded frame, reused.
    sink: ByteSink,
}

impl<W: Write + Seek> FlacStreamWriter<W> {
    /// Starts a stream of `channels` channels of `bits`-bit samples at `sample_rate` on `out`,
    /// writing a placeholder header.
    pub fn new(mut out: W, sample_rate: u32, channels: usize, bits: u16) -> Result<Self, FlacWriteError> {
        let encoder_error = |e: &dyn std::fmt::Display| FlacWriteError::Encoder(e.to_string());
        let info = StreamInfo::new(sample_rate as usize, channels, usize::from(bits))
            .map_err(|e| encoder_error(&e))?;
        let config = config::Encoder::default()
            .into_verified()
            .map_err(|(_, e)| encoder_error(&e))?;
        let frame_buf = FrameBuf::with_size(channels, BLOCK_SIZE).map_err(|e| encoder_error(&e))?;
        let mut writer = FlacStreamWriter {
            out: {
                out.seek(SeekFrom::Start(0))?;
                out
            },
            config,
            info,
            pending: Vec::with_capacity(BLOCK_SIZE * channels),
            frame_buf,
            context: Context::new(usize::from(bits), channels),
            channels,
            frame_bytes: None,
            sink: ByteSink::new(),
        };
        writer.write_header()?;
        Ok(writer)
    }

    /// Appends interleaved samples (a whole number of sample frames), each within the depth.
    pub fn write_interleaved(&mut self, samples: &[i32]) -> Result<(), FlacWriteError> {
        let block = BLOCK_SIZE * self.channels;
        let mut rest = samples;
        while !rest.is_empty() {
            let take = (block - self.pending.len()).min(rest.len());
            self.pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.pending.len() == block {
                self.encode_pending()?;
            }
        }
        Ok(())
    }

    /// Encodes the last, shorter block, writes the final header and returns the output.
    pub fn finish(mut self) -> Result<W, FlacWriteError> {
        if !self.pending.is_empty() {
            self.encode_pending()?;
        }
        self.info.set_md5_digest(&self.context.md5_digest());
        self.info.set_total_samples(self.context.total_samples());
        let (min, max) = self.frame_bytes.unwrap_or((0, 0));
        self.info
            .set_frame_sizes(min, max)
            .map_err(|e| FlacWriteError::Encoder(e.to_string()))?;
        self.out.seek(SeekFrom::Start(0))?;
        self.write_header()?;
        self.out.seek(SeekFrom::End(0))?;
        self.out.flush()?;
        Ok(self.out)
    }

    /// Encodes `pending` as the next frame and writes it.
    fn encode_pending(&mut self) -> Result<(), FlacWriteError> {
        let encoder_error = |e: &dyn std::fmt::Display| FlacWriteError::Encoder(e.to_string());
        (&mut self.frame_buf, &mut self.context)
            .fill_interleaved(&self.pending)
            .map_err(|e| encoder_error(&e))?;
        self.pending.clear();
        let number = self.context.current_frame_number().unwrap_or(0);
        let frame = flacenc::encode_fixed_size_frame(&self.config, &self.frame_buf, number, &self.info)
            .map_err(|e| encoder_error(&e))?;
        self.sink.clear();
        frame.write(&mut self.sink).map_err(|e| encoder_error(&e))?;
        let bytes = self.sink.as_slice().len();
        self.frame_bytes = Some(match self.frame_bytes {
            Some((min, max)) => (min.min(bytes), max.max(bytes)),
            None => (bytes, bytes),
        });
        self.out.write_all(self.sink.as_slice())?;
        Ok(())
    }

    /// Writes the `fLaC` marker and the STREAMINFO block at the current position.
    fn write_header(&mut self) -> Result<(), FlacWriteError> {
        let mut info = self.info.clone();
        // Every frame but the last holds BLOCK_SIZE samples (the header's fixed block size).
        info.set_block_sizes(BLOCK_SIZE, BLOCK_SIZE)
            .map_err(|e| FlacWriteError::Encoder(e.to_string()))?;
        let mut sink = ByteSink::new();
        Stream::with_stream_info(info)
            .write(&mut sink)
            .map_err(|e| FlacWriteError::Encoder(e.to_string()))?;
        self.out.write_all(sink.as_slice())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::files::audio_file::read_all;

    #[test]
    fn a_streamed_flac_reads_back_sample_for_sample() {
        for bits in [16u16, 24] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("x.flac");
            let frames = 3 * BLOCK_SIZE + 123;
            let peak = f64::from((1u32 << (bits - 1)) - 1) * 0.9;
            let samples: Vec<i32> = (0..frames * 2)
                .map(|i| ((i as f64 * 0.01).sin() * peak) as i32 * if i % 2 == 0 { 1 } else { -1 })
                .collect();
            let file = std::fs::File::create(&path).unwrap();
            let mut writer = FlacStreamWriter::new(file, 44_100, 2, bits).unwrap();
            for chunk in samples.chunks(2 * 1000) {
                writer.write_interleaved(chunk).unwrap();
            }
            writer.finish().unwrap();
            let buf = read_all(&path).unwrap();
            assert_eq!(buf.sample_rate, 44_100);
            assert_eq!(buf.frames(), frames);
            let scale = f64::from(1u32 << (bits - 1));
            for (i, pair) in samples.chunks(2).enumerate() {
                for (c, &expected) in pair.iter().enumerate() {
                    let read = (f64::from(buf.channels[c][i]) * scale).round() as i32;
                    assert_eq!(read, expected, "{bits} bit, frame {i}, channel {c}");
                }
            }
        }
    }
}
