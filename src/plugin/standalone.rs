//! The plugin as an application of its own (`stemflow-standalone`, the `standalone` feature):
//! nice-plug's standalone wrapper opens the editor and runs the plugin on JACK, ALSA or no audio
//! device at all, and can play an audio file through the separator in place of the audio input,
//! so the plugin can be tried before it is routed in a DAW.
//!
//! The file is decoded once with the engine's reader ([`read_all`]), folded to the plugin's
//! channel count and, if the wrapper runs at another rate, resampled with the engine's
//! [`FrameResampler`]; the audio thread then only copies samples. Runtime and priors are looked
//! for as the command line looks for them ([`Lookup::Program`](super::locate::Lookup::Program)).

use super::locate;
use super::Stemflow;
use crate::engine::files::audio_file::{read_all, AudioBuffer, AudioError};
use crate::engine::signal::resample::{FrameResampler, ResampleError};
use nice_plug::wrapper::standalone::{
    nice_export_standalone_with_args, nice_export_standalone_with_input, InputSource,
};
use std::path::PathBuf;
use std::process::ExitCode;
use thiserror::Error;

/// What this application adds to the wrapper's options (printed before the wrapper's `--help`).
const USAGE: &str = "\
stemflow-standalone: the Stemflow plugin and its editor as an application.

Options of its own (every other option is the standalone wrapper's, listed below):
      --file <PATH>   Play this audio file (WAV, FLAC, OGG, MP3, AIFF) through the separator
                      instead of the audio input. The wrapper's sample rate follows the file's
                      unless --sample-rate is given (the file is then resampled).
      --once          Play the file once, then silence (default: loop it).

Without --file the plugin's input is the backend's: a JACK port (--connect-jack-inputs) or an
ALSA device (--input-device). --backend dummy runs with no audio device, paced by the clock.
";

/// Why the application could not start.
#[derive(Debug, Error)]
pub enum StandaloneError {
    /// An option of this application's was given without its value.
    #[error("{option} expects a value ({expected}), found the end of the command line")]
    MissingValue {
        /// The option.
        option: &'static str,
        /// What the value should be.
        expected: &'static str,
    },
    /// The file could not be decoded.
    #[error(transparent)]
    Audio(#[from] AudioError),
    /// The file holds no samples to play.
    #[error("{path} holds no audio frames: expected at least one")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The wrapper's layout has no main input to feed.
    #[error("the plugin's audio layout has no main input: expected 1 or more channels, found 0")]
    NoInput,
    /// The wrapper's rate is not a whole number of Hz the resampler can take.
    #[error("the standalone's sample rate must be a positive whole number of Hz, found {0}")]
    Rate(f32),
    /// The file could not be brought to the wrapper's rate.
    #[error(transparent)]
    Resample(#[from] ResampleError),
}

/// A decoded file played into the plugin's main input, looping or once.
pub struct FileInput {
    /// The file, for messages.
    path: PathBuf,
    /// The file as decoded, until [`InputSource::prepare`] turns it into `channels`.
    decoded: AudioBuffer,
    /// Start over at the end instead of playing silence.
    looping: bool,
    /// The file at the wrapper's rate, one vector per plugin input channel (made in `prepare`).
    channels: Vec<Vec<f32>>,
    /// Next frame to play.
    position: usize,
}

impl FileInput {
    /// Decodes `path` (whole, into memory) to play it once or in a loop.
    pub fn open(path: PathBuf, looping: bool) -> Result<FileInput, StandaloneError> {
        let decoded = read_all(&path)?;
        if decoded.frames() == 0 {
            return Err(StandaloneError::Empty { path });
        }
        Ok(FileInput {
            path,
            decoded,
            looping,
            channels: Vec::new(),
            position: 0,
        })
    }

    /// The file's own sample rate.
    pub fn sample_rate(&self) -> u32 {
        self.decoded.sample_rate
    }

    /// Turns the decoded file into `channels` channels at `rate` Hz.
    fn convert(&self, rate: f32, channels: usize) -> Result<Vec<Vec<f32>>, StandaloneError> {
        if channels == 0 {
            return Err(StandaloneError::NoInput);
        }
        if !(rate.is_finite() && rate >= 1.0 && rate.fract() == 0.0) {
            return Err(StandaloneError::Rate(rate));
        }
        let folded = fold_channels(&self.decoded.channels, channels);
        let (from, to) = (self.decoded.sample_rate, rate as u32);
        if from == to {
            return Ok(folded);
        }
        let mut resampler = FrameResampler::new(from, to, self.decoded.frames())?;
        folded
            .iter()
            .map(|channel| resampler.process(channel).map_err(StandaloneError::from))
            .collect()
    }
}

/// The file's channels folded onto `channels` outputs: output `c` is the mean of the file's
/// channels `k` with `k mod channels = c` (stereo to mono: the mean of both), and a file with
/// fewer channels than that repeats them (mono to stereo: the same signal on both).
fn fold_channels(file: &[Vec<f32>], channels: usize) -> Vec<Vec<f32>> {
    let frames = file.first().map_or(0, Vec::len);
    (0..channels)
        .map(|c| {
            let sources: Vec<&Vec<f32>> = if file.len() > c {
                file.iter().skip(c).step_by(channels).collect()
            } else {
                vec![&file[c % file.len()]]
            };
            let scale = 1.0 / sources.len() as f32;
            (0..frames)
                .map(|i| sources.iter().map(|s| s[i]).sum::<f32>() * scale)
                .collect()
        })
        .collect()
}

impl InputSource for FileInput {
    fn prepare(
        &mut self,
        sample_rate: f32,
        _max_block_size: usize,
        channels: usize,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.channels = self.convert(sample_rate, channels)?;
        self.decoded.channels = Vec::new();
        nice_plug::nice_log!(
            "Stemflow: playing {} ({:.1} s at {sample_rate} Hz{})",
            self.path.display(),
            self.channels[0].len() as f64 / f64::from(sample_rate),
            if self.looping { ", looped" } else { ", once" }
        );
        Ok(())
    }

    fn fill(&mut self, channels: &mut [&mut [f32]]) {
        let len = self.channels.first().map_or(0, Vec::len);
        let block = channels.first().map_or(0, |c| c.len());
        let mut done = 0;
        while done < block {
            if self.position >= len && self.looping && len > 0 {
                self.position = 0;
            }
            let take = (block - done).min(len.saturating_sub(self.position));
            for (out, source) in channels.iter_mut().zip(&self.channels) {
                if take > 0 {
                    out[done..done + take].copy_from_slice(&source[self.position..self.position + take]);
                } else {
                    out[done..].fill(0.0);
                }
            }
            if take == 0 {
                break;
            }
            self.position += take;
            done += take;
        }
    }
}

/// This application's own options, taken out of the command line.
#[derive(Debug, Default, PartialEq)]
struct Options {
    /// `--file`.
    file: Option<PathBuf>,
    /// `--once`.
    once: bool,
    /// Whether `--sample-rate` / `-r` was given (else the file's rate is used).
    rate_given: bool,
    /// `--help` / `-h` was asked for.
    help: bool,
    /// Everything else, for the wrapper, program name first.
    rest: Vec<String>,
}

/// Splits the command line into this application's options and the wrapper's.
fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, StandaloneError> {
    let mut options = Options::default();
    let mut args = args.into_iter();
    options.rest.extend(args.next());
    while let Some(arg) = args.next() {
        if arg == "--file" {
            let value = args.next().ok_or(StandaloneError::MissingValue {
                option: "--file",
                expected: "the path of an audio file",
            })?;
            options.file = Some(PathBuf::from(value));
        } else if let Some(value) = arg.strip_prefix("--file=") {
            options.file = Some(PathBuf::from(value));
        } else if arg == "--once" {
            options.once = true;
        } else {
            options.help |= arg == "--help" || arg == "-h";
            options.rate_given |= arg == "-r"
                || arg == "--sample-rate"
                || arg.starts_with("--sample-rate=")
                || (arg.starts_with("-r") && !arg.starts_with("--"));
            options.rest.push(arg);
        }
    }
    Ok(options)
}

/// The standalone application's main: parses its own options, decodes the file if one is given,
/// and runs the wrapper until the editor is closed.
pub fn main() -> ExitCode {
    let options = match parse(std::env::args()) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("stemflow-standalone: error: {e}");
            return ExitCode::from(2);
        }
    };
    if options.help {
        println!("{USAGE}");
    }
    locate::use_program_lookup();
    let mut rest = options.rest;
    let ok = match options.file.filter(|_| !options.help) {
        None => nice_export_standalone_with_args::<Stemflow, _>(rest),
        Some(path) => {
            let input = match FileInput::open(path, !options.once) {
                Ok(input) => input,
                Err(e) => {
                    eprintln!("stemflow-standalone: error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            if !options.rate_given {
                rest.push("--sample-rate".into());
                rest.push(input.sample_rate().to_string());
            }
            nice_export_standalone_with_input::<Stemflow, _>(rest, Box::new(input))
        }
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn own_options_are_taken_out_and_the_rest_kept() {
        let o = parse(args(&["app", "--file", "a.wav", "-b", "dummy", "--once"])).unwrap();
        assert_eq!(o.file, Some(PathBuf::from("a.wav")));
        assert!(o.once && !o.rate_given && !o.help);
        assert_eq!(o.rest, args(&["app", "-b", "dummy"]));
        let o = parse(args(&["app", "--file=b.flac", "-r", "48000"])).unwrap();
        assert_eq!(o.file, Some(PathBuf::from("b.flac")));
        assert!(o.rate_given);
        assert!(matches!(
            parse(args(&["app", "--file"])),
            Err(StandaloneError::MissingValue { option: "--file", .. })
        ));
    }

    #[test]
    fn channels_fold_and_repeat() {
        let stereo = vec![vec![1.0, 0.0], vec![0.0, 1.0]];
        assert_eq!(fold_channels(&stereo, 1), vec![vec![0.5, 0.5]]);
        assert_eq!(fold_channels(&stereo, 2), stereo);
        let mono = vec![vec![0.25, -0.25]];
        assert_eq!(fold_channels(&mono, 2), vec![mono[0].clone(), mono[0].clone()]);
    }

    fn input(samples: Vec<f32>, looping: bool) -> FileInput {
        FileInput {
            path: PathBuf::from("test"),
            decoded: AudioBuffer {
                sample_rate: 8000,
                channels: vec![samples.clone()],
            },
            looping,
            channels: vec![samples],
            position: 0,
        }
    }

    #[test]
    fn a_file_loops_or_ends_in_silence() {
        let mut looped = input(vec![1.0, 2.0, 3.0], true);
        let mut block = [0.0f32; 7];
        looped.fill(&mut [&mut block[..]]);
        assert_eq!(block, [1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0]);
        let mut once = input(vec![1.0, 2.0, 3.0], false);
        let mut block = [9.0f32; 5];
        once.fill(&mut [&mut block[..]]);
        assert_eq!(block, [1.0, 2.0, 3.0, 0.0, 0.0]);
        once.fill(&mut [&mut block[..]]);
        assert_eq!(block, [0.0; 5]);
    }

    #[test]
    fn the_file_follows_the_wrappers_rate() {
        let file = input(vec![0.0; 8000], true);
        let converted = file.convert(16000.0, 2).unwrap();
        assert_eq!(converted.len(), 2);
        assert_eq!(converted[0].len(), 16000);
        assert!(matches!(file.convert(44100.5, 2), Err(StandaloneError::Rate(_))));
        assert!(matches!(file.convert(8000.0, 0), Err(StandaloneError::NoInput)));
    }
}
