//! Reading any audio file symphonia decodes (streaming, deinterleaved f32), and the errors of
//! reading and writing audio files.

use super::decode_damage::DecodeDamage;
use super::mp4_edit_list;
use super::stem_format::StemFormat;
use crate::engine::limits::DAMAGED_PACKETS_TOLERATED;
use std::fs::File;
use std::path::{Path, PathBuf};

use symphonia::core::codecs::audio::{AudioCodecParameters, AudioDecoder, AudioDecoderOptions};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, FormatReader, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::packet::Packet;
use symphonia::core::units::TimeBase;
use thiserror::Error;

/// Everything that can go wrong reading or writing audio files; each message names the path and
/// what was expected and found.
#[derive(Debug, Error)]
pub enum AudioError {
    /// The input path does not exist.
    #[error("expected an audio file at `{path}`, found nothing there")]
    NotFound {
        /// The path asked for.
        path: PathBuf,
    },
    /// The input path is a directory (or another non-file).
    #[error("expected an audio file at `{path}`, found a directory or other non-file")]
    NotAFile {
        /// The path asked for.
        path: PathBuf,
    },
    /// The file holds no audio frames (zero bytes, or a valid header with no samples).
    #[error("expected audio frames in `{path}`, found {found}")]
    Empty {
        /// The file.
        path: PathBuf,
        /// What was there instead, e.g. "a 0-byte file".
        found: String,
    },
    /// The container or codec is not one symphonia decodes.
    #[error(
        "expected an audio format Stemflow can decode (WAV, FLAC, OGG Vorbis, MP3, M4A, AIFF, …) in \
         `{path}`, found {found}"
    )]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What was found, e.g. the extension or codec.
        found: String,
    },
    /// Malformed or truncated data: a bad header or a decode failure mid-stream.
    #[error("expected a well-formed audio stream in `{path}`, found corrupt data: {detail}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What the decoder reported.
        detail: String,
    },
    /// A chained stream (Ogg links one after another) whose later link changes the rate or the
    /// channel count: its stems could not keep one format, and cutting it short would lose audio.
    #[error(
        "expected every link of the chained stream `{path}` in {expected_rate} Hz × \
         {expected_channels} channels (its first link's format), found link {link} in \
         {found_rate} Hz × {found_channels} channels"
    )]
    ChainFormatChange {
        /// The file.
        path: PathBuf,
        /// The link that changes format, from 1.
        link: usize,
        /// The first link's rate.
        expected_rate: u32,
        /// The first link's channel count.
        expected_channels: usize,
        /// The link's rate (0 if it gives none).
        found_rate: u32,
        /// The link's channel count.
        found_channels: usize,
    },
    /// An operating-system error reading or writing the file.
    #[error("I/O error on `{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The output directory cannot be created or written to.
    #[error("expected a writable output directory at `{dir}`, found {reason}")]
    OutputDir {
        /// The directory.
        dir: PathBuf,
        /// Why it is unusable.
        reason: String,
    },
    /// A stem longer than its format can hold (a WAV's sizes are 32-bit: 4 GiB).
    #[error(
        "cannot write `{path}`: a {format} file holds at most {max_frames} sample frames \
         ({max_hours:.1} h) at this rate and channel count, found {found_frames}"
    )]
    TooLongForFormat {
        /// The stem file.
        path: PathBuf,
        /// The stems' format.
        format: StemFormat,
        /// The most frames it can hold.
        max_frames: u64,
        /// The same in hours.
        max_hours: f64,
        /// The frames asked for.
        found_frames: u64,
    },
    /// A stem name that cannot be a file name.
    #[error("expected a stem name of lower-case letters, digits, `-` and `_`, starting with a letter or digit, found `{name}`")]
    InvalidStemName {
        /// The offending name.
        name: String,
    },
    /// The output format cannot represent what was asked (e.g. 0 channels, or 9 in FLAC).
    #[error("cannot write `{path}`: expected {expected}, found {found}")]
    WriteFormat {
        /// The file.
        path: PathBuf,
        /// What the format accepts.
        expected: String,
        /// What was asked for.
        found: String,
    },
}

/// A whole decoded file in memory (for short files and tests; long files should stream through
/// [`AudioReader::read_into`]).
#[derive(Debug, Clone, PartialEq)]
pub struct AudioBuffer {
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// One vector of f32 samples in [−1, 1] per channel, all the same length.
    pub channels: Vec<Vec<f32>>,
}

impl AudioBuffer {
    /// Frames (samples per channel).
    pub fn frames(&self) -> usize {
        self.channels.first().map_or(0, Vec::len)
    }
}

/// A streaming decoder for one audio file: symphonia's format reader and decoder plus the
/// decoded samples not yet handed out, so memory stays bounded by one packet.
pub struct AudioReader {
    /// The file, for error messages.
    path: PathBuf,
    /// symphonia's demuxer.
    format: Box<dyn FormatReader>,
    /// symphonia's decoder for the chosen track.
    decoder: Box<dyn AudioDecoder>,
    /// The decoded track's id (other tracks' packets are skipped).
    track_id: u32,
    /// Sample rate in Hz.
    sample_rate: u32,
    /// Channel count.
    channels: usize,
    /// Frames the container declares, if it does.
    total_frames: Option<u64>,
    /// Decoded, deinterleaved samples of the last packet.
    pending: Vec<Vec<f32>>,
    /// Frames of `pending` already handed out.
    pending_pos: usize,
    /// The demuxer reported the end of the stream.
    finished: bool,
    /// Links of a chained stream begun so far (1 for an unchained file), to name one in errors.
    links: usize,
    /// The track's time base, to turn a damaged packet's duration into sample frames.
    time_base: Option<TimeBase>,
    /// Packets of the track seen so far, decoded or damaged.
    packets_seen: u64,
    /// Sample frames produced so far (decoded or silence), where the next packet starts.
    frames_produced: u64,
    /// Packets the decoder failed on, replaced by silence.
    damage: DecodeDamage,
    /// Decoded frames still to drop before the audio starts (an MP4 edit list's priming).
    skip_left: u64,
    /// Frames still to hand out before the audio ends (an MP4 edit list's length), if bounded.
    keep_left: Option<u64>,
}

impl std::fmt::Debug for AudioReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioReader")
            .field("path", &self.path)
            .field("sample_rate", &self.sample_rate)
            .field("channels", &self.channels)
            .field("total_frames", &self.total_frames)
            .finish()
    }
}

impl AudioReader {
    /// Opens and probes `path`, and decodes the first packet so an empty or undecodable file is
    /// reported here rather than mid-run.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, AudioError> {
        let path = path.as_ref().to_path_buf();
        let file = open_audio_file(&path)?;
        let format = probe(&path, file)?;
        let track = format
            .default_track(TrackType::Audio)
            .ok_or_else(|| AudioError::Unsupported {
                path: path.clone(),
                found: "a container without an audio track".into(),
            })?;
        let params = track
            .codec_params
            .as_ref()
            .and_then(|p| p.audio())
            .cloned()
            .ok_or_else(|| AudioError::Unsupported {
                path: path.clone(),
                found: "an audio track without codec parameters".into(),
            })?;
        let (track_id, total_frames, time_base) = (track.id, track.num_frames, track.time_base);
        let decoder = symphonia::default::get_codecs()
            .make_audio_decoder(&params, &AudioDecoderOptions::default())
            .map_err(|e| AudioError::Unsupported {
                path: path.clone(),
                found: format!("codec {:?} ({e})", params.codec),
            })?;
        let (sample_rate, channels) = checked_format(&path, &params)?;
        // What an MP4's edit list keeps of the decoded track: without it an AAC file's stems
        // would start late by the encoder's priming and run long by its padding.
        let edit = mp4_edit_list::sound_track_span(&path, sample_rate);
        let mut reader = AudioReader {
            path,
            format,
            decoder,
            track_id,
            sample_rate,
            channels,
            total_frames: edit.map(|e| e.keep_frames).or(total_frames),
            pending: vec![Vec::new(); channels],
            pending_pos: 0,
            finished: false,
            links: 1,
            time_base,
            packets_seen: 0,
            frames_produced: 0,
            damage: DecodeDamage::default(),
            skip_left: edit.map_or(0, |e| e.skip_frames),
            keep_left: edit.map(|e| e.keep_frames),
        };
        if reader.total_frames == Some(0) || !reader.fill_pending()? {
            return Err(AudioError::Empty {
                path: reader.path,
                found: "a header with no audio frames".into(),
            });
        }
        Ok(reader)
    }

    /// The file being read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sample rate in Hz.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Channel count.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Frames the container declares, if it does (not all formats know before decoding).
    pub fn total_frames(&self) -> Option<u64> {
        self.total_frames
    }

    /// The packets replaced by silence so far because the decoder failed on them.
    pub fn damage(&self) -> DecodeDamage {
        self.damage
    }

    /// Appends up to `max_frames` frames to each channel vector of `out` (one per channel) and
    /// returns how many were appended; 0 means the end of the file. Allocates only if `out`
    /// lacks capacity (reserve `max_frames` up front for allocation-free reading).
    ///
    /// Panics if `out.len() != channels()`.
    pub fn read_into(&mut self, out: &mut [Vec<f32>], max_frames: usize) -> Result<usize, AudioError> {
        assert_eq!(
            out.len(),
            self.channels,
            "read_into: expected one vector per channel"
        );
        let mut done = 0;
        while done < max_frames && self.keep_left != Some(0) {
            let available = self.pending_len() - self.pending_pos;
            if available == 0 {
                if !self.fill_pending()? {
                    break;
                }
                continue;
            }
            if self.skip_left > 0 {
                let skipped = available.min(usize::try_from(self.skip_left).unwrap_or(usize::MAX));
                self.pending_pos += skipped;
                self.skip_left -= skipped as u64;
                continue;
            }
            let keep = self
                .keep_left
                .map_or(usize::MAX, |k| usize::try_from(k).unwrap_or(usize::MAX));
            let n = available.min(max_frames - done).min(keep);
            if let Some(k) = &mut self.keep_left {
                *k -= n as u64;
            }
            for (o, p) in out.iter_mut().zip(&self.pending) {
                o.extend_from_slice(&p[self.pending_pos..self.pending_pos + n]);
            }
            self.pending_pos += n;
            done += n;
        }
        Ok(done)
    }

    /// Decodes the whole file at `path` into memory.
    pub fn read_all(path: impl AsRef<Path>) -> Result<AudioBuffer, AudioError> {
        read_all(path)
    }

    /// Frames in `pending`.
    fn pending_len(&self) -> usize {
        self.pending.first().map_or(0, Vec::len)
    }

    /// Decodes packets until one yields frames; returns false at the end of the stream.
    fn fill_pending(&mut self) -> Result<bool, AudioError> {
        self.pending_pos = 0;
        self.pending.iter_mut().for_each(Vec::clear);
        while !self.finished {
            let packet = match self.format.next_packet() {
                Ok(Some(packet)) => packet,
                Ok(None) => {
                    self.finished = true;
                    break;
                }
                // The next link of a chained stream: decode it too.
                Err(SymphoniaError::ResetRequired) => {
                    if !self.start_next_link()? {
                        self.finished = true;
                        break;
                    }
                    continue;
                }
                // A stream whose header gives no length (a WAV written to a pipe) ends where the
                // file does.
                Err(SymphoniaError::IoError(e))
                    if e.kind() == std::io::ErrorKind::UnexpectedEof && self.total_frames.is_none() =>
                {
                    self.finished = true;
                    break;
                }
                Err(e) => return Err(classify(&self.path, e)),
            };
            if packet.track_id != self.track_id {
                continue;
            }
            self.packets_seen += 1;
            let decoded = match self.decoder.decode(&packet) {
                Ok(decoded) => decoded,
                Err(SymphoniaError::DecodeError(what)) => {
                    if self.fill_with_silence(&packet, what)? {
                        return Ok(true);
                    }
                    continue;
                }
                Err(e) => return Err(classify(&self.path, e)),
            };
            if decoded.frames() == 0 {
                continue;
            }
            self.frames_produced += decoded.frames() as u64;
            let found = decoded.spec().channels().count();
            if found != self.channels {
                return Err(AudioError::Corrupt {
                    path: self.path.clone(),
                    detail: format!(
                        "a packet with {found} channels in a stream declared with {}",
                        self.channels
                    ),
                });
            }
            decoded.copy_to_vecs_planar::<f32>(&mut self.pending);
            return Ok(true);
        }
        Ok(false)
    }

    /// Puts silence of `packet`'s length in `pending` in place of a packet the decoder failed on
    /// (`what`), and records it; returns whether any frames were put there. Refuses the file once
    /// more packets are damaged than [`DAMAGED_PACKETS_TOLERATED`] allows.
    fn fill_with_silence(&mut self, packet: &Packet, what: &str) -> Result<bool, AudioError> {
        let frames = self.packet_frames(packet);
        self.damage.record(self.frames_produced, frames);
        if !DAMAGED_PACKETS_TOLERATED.tolerates(self.damage.packets, self.packets_seen) {
            return Err(AudioError::Corrupt {
                path: self.path.clone(),
                detail: format!(
                    "{} of its first {} packets could not be decoded (the last: {what})",
                    self.damage.packets, self.packets_seen
                ),
            });
        }
        self.frames_produced += frames;
        let frames = usize::try_from(frames).unwrap_or(usize::MAX);
        self.pending.iter_mut().for_each(|p| p.resize(frames, 0.0));
        Ok(frames > 0)
    }

    /// A packet's audible length in sample frames: its duration (which leaves out what the decoder
    /// trims for gapless playback), in the track's time base (1 / rate when it gives none), and never more
    /// than a second, whatever a damaged packet claims.
    fn packet_frames(&self, packet: &Packet) -> u64 {
        let ticks = packet.dur.get();
        let frames = match self.time_base {
            Some(base) => {
                let rate = u128::from(self.sample_rate);
                let exact = u128::from(ticks) * u128::from(base.numer.get()) * rate;
                u64::try_from(exact / u128::from(base.denom.get())).unwrap_or(u64::MAX)
            }
            None => ticks,
        };
        frames.min(u64::from(self.sample_rate))
    }

    /// Moves to the next link of a chained stream after the demuxer asked for a reset: a new
    /// decoder for its audio track, which must have the first link's rate and channel count.
    /// Returns false if the new link has no audio track.
    fn start_next_link(&mut self) -> Result<bool, AudioError> {
        self.links += 1;
        let Some(track) = self.format.default_track(TrackType::Audio) else {
            return Ok(false);
        };
        let Some(params) = track.codec_params.as_ref().and_then(|p| p.audio()).cloned() else {
            return Ok(false);
        };
        let found_rate = params.sample_rate.unwrap_or(0);
        let found_channels = params.channels.as_ref().map_or(0, |c| c.count());
        if found_rate != self.sample_rate || found_channels != self.channels {
            return Err(AudioError::ChainFormatChange {
                path: self.path.clone(),
                link: self.links,
                expected_rate: self.sample_rate,
                expected_channels: self.channels,
                found_rate,
                found_channels,
            });
        }
        self.track_id = track.id;
        self.decoder = symphonia::default::get_codecs()
            .make_audio_decoder(&params, &AudioDecoderOptions::default())
            .map_err(|e| AudioError::Unsupported {
                path: self.path.clone(),
                found: format!("codec {:?} in link {} ({e})", params.codec, self.links),
            })?;
        Ok(true)
    }
}

/// The file at `path`, opened, after checking that it is a non-empty regular file.
fn open_audio_file(path: &Path) -> Result<File, AudioError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(AudioError::NotFound {
                path: path.to_path_buf(),
            })
        }
        Err(source) => {
            return Err(AudioError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    if !meta.is_file() {
        return Err(AudioError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    if meta.len() == 0 {
        return Err(AudioError::Empty {
            path: path.to_path_buf(),
            found: "a 0-byte file".into(),
        });
    }
    File::open(path).map_err(|source| AudioError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// symphonia's demuxer for `file`, found by probing its content with its extension as a hint.
fn probe(path: &Path, file: File) -> Result<Box<dyn FormatReader>, AudioError> {
    let mss = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    let extension = path.extension().and_then(|e| e.to_str());
    if let Some(ext) = extension {
        hint.with_extension(ext);
    }
    symphonia::default::get_probe()
        .probe(&hint, mss, FormatOptions::default(), MetadataOptions::default())
        .map_err(|e| match e {
            SymphoniaError::Unsupported(_) => AudioError::Unsupported {
                path: path.to_path_buf(),
                found: match extension {
                    Some(ext) => format!("data no demuxer recognises (extension `.{ext}`)"),
                    None => "data no demuxer recognises (no extension)".to_owned(),
                },
            },
            other => classify(path, other),
        })
}

/// The track's sample rate and channel count, or the error when its header gives none.
fn checked_format(path: &Path, params: &AudioCodecParameters) -> Result<(u32, usize), AudioError> {
    let corrupt = |detail: &str| AudioError::Corrupt {
        path: path.to_path_buf(),
        detail: detail.into(),
    };
    let sample_rate = params
        .sample_rate
        .ok_or_else(|| corrupt("the header gives no sample rate"))?;
    if sample_rate == 0 {
        return Err(corrupt("the header gives a sample rate of 0 Hz"));
    }
    let channels = params.channels.as_ref().map_or(0, |c| c.count());
    if channels == 0 {
        return Err(corrupt("the header gives no channels"));
    }
    Ok((sample_rate, channels))
}

/// Maps a symphonia error to an [`AudioError`] for `path`.
fn classify(path: &Path, e: SymphoniaError) -> AudioError {
    let path = path.to_path_buf();
    match e {
        SymphoniaError::IoError(source) if source.kind() == std::io::ErrorKind::UnexpectedEof => {
            AudioError::Corrupt {
                path,
                detail: "the stream ends before its header says (truncated file?)".into(),
            }
        }
        SymphoniaError::IoError(source) => AudioError::Io { path, source },
        SymphoniaError::Unsupported(what) => AudioError::Unsupported {
            path,
            found: format!("an unsupported feature: {what}"),
        },
        other => AudioError::Corrupt {
            path,
            detail: other.to_string(),
        },
    }
}

/// Decodes the whole file at `path` into memory.
pub fn read_all(path: impl AsRef<Path>) -> Result<AudioBuffer, AudioError> {
    let mut reader = AudioReader::open(path)?;
    // What the header claims, up to about 24 s at 44.1 kHz: a damaged header cannot size the
    // buffers; a longer file grows them as it is read.
    let capacity = reader.total_frames().unwrap_or(0).min(1 << 20) as usize;
    let mut channels = vec![Vec::with_capacity(capacity); reader.channels()];
    while reader.read_into(&mut channels, 1 << 16)? > 0 {}
    Ok(AudioBuffer {
        sample_rate: reader.sample_rate(),
        channels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_wav(path: &Path, spec: hound::WavSpec, frames: usize) {
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for i in 0..frames * spec.channels as usize {
            let x = ((i % 50) as f32 / 50.0) - 0.5;
            match (spec.sample_format, spec.bits_per_sample) {
                (hound::SampleFormat::Float, _) => w.write_sample(x).unwrap(),
                (_, 8) => w.write_sample((x * 127.0) as i8).unwrap(),
                (_, 16) => w.write_sample((x * 32767.0) as i16).unwrap(),
                (_, bits) => w
                    .write_sample((x * ((1i64 << (bits - 1)) - 1) as f32) as i32)
                    .unwrap(),
            }
        }
        w.finalize().unwrap();
    }

    fn spec(channels: u16, bits: u16, float: bool) -> hound::WavSpec {
        hound::WavSpec {
            channels,
            sample_rate: 44_100,
            bits_per_sample: bits,
            sample_format: if float {
                hound::SampleFormat::Float
            } else {
                hound::SampleFormat::Int
            },
        }
    }

    #[test]
    fn reads_pcm_and_float_wavs_with_matching_content() {
        let dir = tempfile::tempdir().unwrap();
        for (bits, float) in [(8, false), (16, false), (24, false), (32, false), (32, true)] {
            let path = dir.path().join(format!("t{bits}{float}.wav"));
            write_wav(&path, spec(2, bits, float), 10_000);
            let buf = read_all(&path).unwrap();
            assert_eq!(buf.sample_rate, 44_100);
            assert_eq!(buf.channels.len(), 2);
            assert_eq!(buf.frames(), 10_000, "{bits} bits");
            // frame 3, channel 1 is interleaved sample 7: (7 % 50)/50 − 0.5 = −0.36
            let tol = if bits == 8 { 0.02 } else { 1e-3 };
            assert!(
                (buf.channels[1][3] + 0.36).abs() < tol,
                "{bits}: {}",
                buf.channels[1][3]
            );
        }
    }

    #[test]
    fn a_streamed_wav_of_unknown_length_is_read_to_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("streamed.wav");
        write_wav(&path, spec(2, 16, false), 10_000);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        bytes[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
        std::fs::write(&path, bytes).unwrap();
        let reader = AudioReader::open(&path).unwrap();
        assert_eq!(reader.total_frames(), None);
        assert_eq!(read_all(&path).unwrap().frames(), 10_000);
    }

    /// A fixture of `tests/fixtures/` (made by `make_chained_ogg.sh` or
    /// `make_compressed_fixtures.sh`).
    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    #[test]
    fn every_link_of_a_chained_ogg_is_decoded() {
        let audio = read_all(fixture("chained.ogg")).unwrap();
        // 0.6 s and 0.4 s at 44.1 kHz; Vorbis may trim or pad a block at each link's ends.
        assert!(
            audio.frames().abs_diff(44_100) <= 2048,
            "{} frames, expected about 44100",
            audio.frames()
        );
        // The second link is a 660 Hz tone of amplitude 1/8 (mean square 0.0078): its samples
        // are there, not silence.
        let tail = &audio.channels[0][audio.frames() - 8000..];
        assert!(tail.iter().map(|x| x * x).sum::<f32>() / 8000.0 > 0.005);
    }

    #[test]
    fn a_chained_ogg_that_changes_rate_is_refused_naming_both() {
        let error = read_all(fixture("chained_rate_change.ogg")).unwrap_err();
        let message = error.to_string();
        assert!(
            matches!(error, AudioError::ChainFormatChange { link: 2, .. })
                && message.contains("44100 Hz")
                && message.contains("48000 Hz"),
            "{message}"
        );
    }

    #[test]
    fn an_m4a_is_trimmed_to_its_edit_list_so_its_audio_starts_on_time() {
        let audio = read_all(fixture("burst.m4a")).unwrap();
        // The encoder primed 1024 samples and padded the end; the edit list keeps 1 s.
        assert_eq!(audio.frames(), 44_100);
        let onset = audio.channels[0].iter().position(|x| x.abs() > 0.05).unwrap();
        assert!(
            (22_050 - 64..=22_050 + 8).contains(&onset),
            "the burst starts at 0.5 s (22050), found {onset}"
        );
    }

    #[test]
    fn a_damaged_mp3_frame_becomes_silence_of_its_length_with_a_record() {
        let clean = read_all(fixture("tone.mp3")).unwrap();
        assert_eq!(
            clean.frames(),
            44_100,
            "LAME's gapless header trims to the input's length"
        );
        let mut reader = AudioReader::open(fixture("damaged.mp3")).unwrap();
        let mut out = vec![Vec::new()];
        while reader.read_into(&mut out, 1 << 12).unwrap() > 0 {}
        assert_eq!(
            out[0].len(),
            clean.frames(),
            "the stems stay aligned with the input"
        );
        let damage = reader.damage();
        assert_eq!(damage.packets, 1);
        assert_eq!(damage.silent_frames, 1152);
        let at = damage.first_at_frame.unwrap() as usize;
        assert!(out[0][at..at + 1152].iter().all(|&x| x == 0.0));
        // Everything before the damaged packet decodes as it does in the clean file.
        let first_difference =
            |from: usize, to: usize| (from..to).find(|&i| out[0][i] != clean.channels[0][i]);
        assert_eq!(first_difference(0, at), None, "before the damage (at {at})");
        // After it the decoder's bit reservoir (a packet's data may start up to 511 bytes back)
        // and overlap settle within a few packets; the same samples then come out at the same
        // positions (a shift would differ by the tone's whole amplitude).
        let settled = at + 6 * 1152;
        let worst = (settled..out[0].len())
            .map(|i| (out[0][i] - clean.channels[0][i]).abs())
            .fold(0.0f32, f32::max);
        assert!(
            worst < 1e-3,
            "after the damage (at {at}) the stems differ by {worst}"
        );
        assert!(read_all(fixture("tone.mp3")).is_ok());
    }

    #[test]
    fn a_file_of_mostly_damaged_packets_is_refused_as_corrupt() {
        let err = read_all(fixture("ruined.mp3")).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, AudioError::Corrupt { .. }), "{err:?}");
        assert!(text.contains("packets could not be decoded"), "{text}");
    }

    #[test]
    fn reads_aiff() {
        // A hand-made 16-bit big-endian AIFF: FORM/AIFF with COMM and SSND chunks.
        let frames = 300u32;
        let data: Vec<u8> = (0..frames * 2)
            .flat_map(|i| (((i % 100) as i16 - 50) * 300).to_be_bytes())
            .collect();
        let mut comm = Vec::new();
        comm.extend_from_slice(&2i16.to_be_bytes());
        comm.extend_from_slice(&frames.to_be_bytes());
        comm.extend_from_slice(&16i16.to_be_bytes());
        comm.extend_from_slice(&[0x40, 0x0E, 0xAC, 0x44, 0, 0, 0, 0, 0, 0]); // 44100 as f80
        let mut body = b"AIFF".to_vec();
        body.extend_from_slice(b"COMM");
        body.extend_from_slice(&(comm.len() as u32).to_be_bytes());
        body.extend_from_slice(&comm);
        body.extend_from_slice(b"SSND");
        body.extend_from_slice(&(data.len() as u32 + 8).to_be_bytes());
        body.extend_from_slice(&[0; 8]);
        body.extend_from_slice(&data);
        let mut file = b"FORM".to_vec();
        file.extend_from_slice(&(body.len() as u32).to_be_bytes());
        file.extend_from_slice(&body);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.aiff");
        std::fs::write(&path, file).unwrap();
        let buf = read_all(&path).unwrap();
        assert_eq!(buf.sample_rate, 44_100);
        assert_eq!(buf.channels.len(), 2);
        assert_eq!(buf.frames(), frames as usize);
        // frame 1, channel 1 is interleaved sample 3: (3 − 50)·300 / 32768
        assert!((buf.channels[1][1] - (-47.0 * 300.0 / 32768.0)).abs() < 1e-4);
    }

    #[test]
    fn streaming_read_returns_everything_in_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.wav");
        write_wav(&path, spec(1, 16, false), 12_345);
        let mut r = AudioReader::open(&path).unwrap();
        assert_eq!(r.total_frames(), Some(12_345));
        let mut out = vec![Vec::new()];
        let mut total = 0;
        loop {
            let n = r.read_into(&mut out, 1000).unwrap();
            assert!(n <= 1000);
            if n == 0 {
                break;
            }
            total += n;
        }
        assert_eq!(total, 12_345);
        assert_eq!(out[0].len(), 12_345);
        assert_eq!(r.read_into(&mut out, 1000).unwrap(), 0);
    }

    #[test]
    fn missing_file_and_directory_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.wav");
        let e = AudioReader::open(&missing).unwrap_err();
        assert!(matches!(e, AudioError::NotFound { .. }), "{e}");
        assert!(e.to_string().contains("nope.wav"));
        let e = AudioReader::open(dir.path()).unwrap_err();
        assert!(matches!(e, AudioError::NotAFile { .. }), "{e}");
    }

    #[test]
    fn zero_byte_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("zero.wav");
        File::create(&path).unwrap();
        let e = AudioReader::open(&path).unwrap_err();
        assert!(matches!(e, AudioError::Empty { .. }), "{e}");
        assert!(e.to_string().contains("0-byte"));
    }

    #[test]
    fn wav_with_no_frames_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("none.wav");
        write_wav(&path, spec(2, 16, false), 0);
        let e = AudioReader::open(&path).unwrap_err();
        assert!(matches!(e, AudioError::Empty { .. }), "{e}");
    }

    #[test]
    fn text_renamed_wav_is_unsupported_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.wav");
        std::fs::write(
            &path,
            "these are not the samples you are looking for\n".repeat(100),
        )
        .unwrap();
        let e = AudioReader::open(&path).unwrap_err();
        assert!(matches!(e, AudioError::Unsupported { .. }), "{e}");
        assert!(e.to_string().contains(".wav"), "{e}");
    }

    #[test]
    fn truncated_wav_is_corrupt_not_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cut.wav");
        write_wav(&path, spec(2, 16, false), 50_000);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2 + 1]).unwrap();
        match read_all(&path) {
            Err(e) => assert!(matches!(e, AudioError::Corrupt { .. }), "{e}"),
            Ok(buf) => panic!("truncated file read as {} frames", buf.frames()),
        }
    }

    #[test]
    fn header_only_garbage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("head.wav");
        std::fs::write(&path, b"RIFF\x24\x00\x00\x00WAVEfmt ").unwrap();
        assert!(AudioReader::open(&path).is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

        /// A damaged WAV or FLAC (bytes overwritten, cut out or cut off, a header that claims
        /// any length) is read to its end or refused with an error: never a panic, and never a
        /// buffer sized by what a header claims.
        #[test]
        fn damaged_audio_is_an_error_never_a_panic(
            flac in proptest::prelude::any::<bool>(),
            edits in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 1..8),
            cut in proptest::prelude::any::<usize>(),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let clean = dir.path().join(if flac { "clean.flac" } else { "clean.wav" });
            if flac {
                let file = File::create(&clean).unwrap();
                let mut writer = crate::engine::files::flac_stream_writer::FlacStreamWriter::new(file, 22_050, 2, 16).unwrap();
                let samples: Vec<i32> = (0..2 * 6000).map(|i| ((i * 37) % 2000) - 1000).collect();
                writer.write_interleaved(&samples).unwrap();
                writer.finish().unwrap();
            } else {
                write_wav(&clean, spec(2, 16, false), 6000);
            }
            let mut bytes = std::fs::read(&clean).unwrap();
            for (i, b) in edits {
                let n = bytes.len();
                // Mostly the header, where a wrong byte does the most.
                let at = if i % 2 == 0 { i % n.min(64) } else { i % n };
                bytes[at] = b;
            }
            if cut % 3 == 0 {
                bytes.truncate(cut % bytes.len());
            }
            let damaged = dir.path().join(if flac { "damaged.flac" } else { "damaged.wav" });
            std::fs::write(&damaged, &bytes).unwrap();
            if let Ok(mut reader) = AudioReader::open(&damaged) {
                let mut channels = vec![Vec::new(); reader.channels().min(64)];
                if channels.len() == reader.channels() {
                    let mut total = 0;
                    while let Ok(n) = reader.read_into(&mut channels, 4096) {
                        if n == 0 || total > 1 << 22 {
                            break;
                        }
                        total += n;
                        channels.iter_mut().for_each(Vec::clear);
                    }
                }
            }
            let _ = read_all(&damaged);
        }
    }
}
