//! `stemflow separate`: one WAV per stem for every input track, a progress bar, and a summary
//! line; a batch of tracks goes on past a failing one and names the failures at the end.

use super::batch::{expand_inputs, plan_tracks, Track};
use super::interrupt;
use super::shared::SharedArgs;
use super::CliError;
use crate::engine::files::audio_file::AudioReader;
use crate::engine::files::separate_file::{separate_file, JobProgress, SeparateFileError};
use crate::engine::limits::check_format;
use crate::engine::priors::prior::Prior;
use crate::engine::priors::runtime::Runtime;
use crate::engine::search::separator::{SeparationError, Separator};
use crate::engine::search::settings::{Objective, OutputMode, Preset, SeparationSettings, SettingsError};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};

/// The objective named on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ObjectiveArg {
    /// Generalised KL divergence only (γ = 0).
    Mle,
    /// KL minus γ times the priors' log-density.
    Map,
}

/// Arguments of `separate`.
#[derive(Debug, Args)]
pub struct SeparateArgs {
    /// The mixes to separate (WAV, FLAC, OGG, MP3, AIFF; any rate and channel count): files, and
    /// folders searched recursively for audio.
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
    /// Output folder. One input: receives its `<stem>.wav` files. Several: one folder per track,
    /// `DIR/<track>/<stem>.wav` (default `stems/<track>/`).
    #[arg(short, long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Stems to separate, comma-separated (default: every installed prior).
    #[arg(long, value_delimiter = ',')]
    pub stems: Vec<String>,
    /// Settings to start from (`default`, `realtime`: a shorter search, `paper`: the paper's); the
    /// options below override them.
    #[arg(long, default_value = "default")]
    pub preset: Preset,
    /// Adam iterations per 5-s frame.
    #[arg(long)]
    pub iterations: Option<u32>,
    /// Adam learning rate.
    #[arg(long)]
    pub learning_rate: Option<f32>,
    /// Separation objective.
    #[arg(long, value_enum)]
    pub objective: Option<ObjectiveArg>,
    /// Weight of the prior term for `--objective map`, in (0, 1].
    #[arg(long)]
    pub gamma: Option<f32>,
    /// Output mode: consistent (stems sum to the mix) or mixture-phase (the paper's).
    #[arg(long)]
    pub mode: Option<OutputMode>,
    /// Level calibration strength in [0, 4]: each prior's output is scaled per frequency bin
    /// towards its level by (L[f(z)]/f(0))^STRENGTH (0 = off, the paper; default 0.5).
    #[arg(long, value_name = "STRENGTH")]
    pub level_calibration: Option<f32>,
    /// Fraction in [0, 0.5) of each frequency bin's loudest latent samples the level
    /// calibration leaves out of the prior's level (0 = the mean level; default 0.1).
    #[arg(long, value_name = "FRACTION")]
    pub level_trim: Option<f32>,
    /// Exponent p in [0.25, 4] of the consistent masks sᵢ^p / Σ sⱼ^p (1 = magnitude ratio,
    /// 2 = Wiener; below 1 softer).
    #[arg(long, value_name = "P")]
    pub mask_exponent: Option<f32>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// The option that sets a field of [`SeparationSettings`] (for the engine's range errors).
fn option_for(field: &str) -> &'static str {
    match field {
        "iterations" => "--iterations",
        "adam.learning_rate" => "--learning-rate",
        "objective.gamma" => "--gamma",
        "mask_exponent" => "--mask-exponent",
        "calibration_strength" => "--level-calibration",
        "calibration_trim" => "--level-trim",
        "stem_threads" => "--stem-threads",
        _ => "--preset",
    }
}

/// The engine's refusal of a setting, said in terms of the option that set it.
fn usage_error(error: SettingsError) -> CliError {
    CliError::Usage(format!("{}: {error}", option_for(error.field)))
}

impl SeparateArgs {
    /// The preset with every option given applied, or why the options contradict each other
    /// (each value's range is the engine's, checked when the separator is built).
    fn settings(&self) -> Result<SeparationSettings, CliError> {
        let mut settings = self.preset.settings();
        if let Some(iterations) = self.iterations {
            settings.iterations = iterations as usize;
        }
        if let Some(lr) = self.learning_rate {
            settings.adam.learning_rate = lr;
        }
        if let Some(mode) = self.mode {
            settings.mode = mode;
        }
        if let Some(strength) = self.level_calibration {
            settings.calibration_strength = strength;
        }
        if let Some(trim) = self.level_trim {
            settings.calibration_trim = trim;
        }
        if let Some(p) = self.mask_exponent {
            settings.mask_exponent = p;
        }
        settings.objective = match (self.objective, self.gamma) {
            (Some(ObjectiveArg::Map), gamma) => Objective::Map {
                gamma: gamma.unwrap_or(1.0),
            },
            (Some(ObjectiveArg::Mle), Some(gamma)) if gamma != 0.0 => {
                return Err(CliError::Usage(format!(
                    "--gamma {gamma} needs --objective map (MLE means γ = 0)"
                )))
            }
            (None, Some(_)) => return Err(CliError::Usage("--gamma needs --objective map".into())),
            (Some(ObjectiveArg::Mle), _) => Objective::Mle,
            (None, None) => settings.objective,
        };
        Ok(settings)
    }
}

/// `--stems` naming a stem twice would write one file twice.
fn refuse_repeated_stems(stems: &[String]) -> Result<(), CliError> {
    for (i, stem) in stems.iter().enumerate() {
        if stems[..i].contains(stem) {
            return Err(CliError::Usage(format!(
                "--stems names `{stem}` twice; expected each stem once"
            )));
        }
    }
    Ok(())
}

/// A stem file that would be the input itself (`-o` its folder, the input named like a stem).
fn refuse_replacing_the_input<'a>(
    input: &Path,
    out_dir: &Path,
    stems: impl Iterator<Item = &'a str>,
) -> Result<(), CliError> {
    let Ok(input) = input.canonicalize() else {
        return Ok(());
    };
    for stem in stems {
        let target = out_dir.join(format!("{stem}.wav"));
        if target.canonicalize().is_ok_and(|t| t == input) {
            return Err(CliError::Usage(format!(
                "-o {} would replace the input {} with its `{stem}` stem; choose another folder",
                out_dir.display(),
                input.display()
            )));
        }
    }
    Ok(())
}

/// Run `separate`: load the runtime and priors once, then stream every track through the engine.
/// One track fails the command with its error; in a batch a failing track is reported and the
/// others go on, and the command fails at the end naming the tracks that did not separate.
pub fn run(shared: &SharedArgs, args: SeparateArgs) -> Result<(), CliError> {
    let settings = shared.with_threads(args.settings()?);
    refuse_repeated_stems(&args.stems)?;
    let files = expand_inputs(&args.inputs);
    if files.is_empty() {
        return Err(CliError::Usage(format!(
            "no audio files ({}) in {}",
            super::batch::AUDIO_EXTENSIONS.join(", "),
            args.inputs
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let tracks = plan_tracks(&files, args.output.as_deref());
    // Once for the whole run: a Ctrl-C between two tracks stops the next one at its start.
    interrupt::install();
    let mut job = Job {
        shared,
        args: &args,
        settings,
        runtime: None,
        priors: None,
    };
    if let [track] = tracks.as_slice() {
        return job.separate(track);
    }
    // A batch loads what every track needs first, so a missing runtime or prior stops it once
    // instead of failing each track.
    let runtime = job.shared.runtime()?;
    job.priors = Some(job.shared.load_priors(&runtime, &args.stems)?);
    job.runtime = Some(runtime);
    let mut failed = Vec::new();
    for (i, track) in tracks.iter().enumerate() {
        if !args.quiet {
            println!("[{}/{}] {}", i + 1, tracks.len(), track.input.display());
        }
        match job.separate(track) {
            Ok(()) => {}
            Err(CliError::Separate(SeparateFileError::Stopped)) => {
                return Err(CliError::Separate(SeparateFileError::Stopped))
            }
            Err(error) => {
                eprintln!("stemflow: error: {}: {error}", track.input.display());
                failed.push(track.input.display().to_string());
            }
        }
    }
    println!(
        "{} of {} tracks separated",
        tracks.len() - failed.len(),
        tracks.len()
    );
    if failed.is_empty() {
        Ok(())
    } else {
        Err(CliError::Batch {
            failed,
            total: tracks.len(),
        })
    }
}

/// What a run keeps from one track to the next: the runtime and the priors, loaded when the first
/// track needs them (and again after a separator that could not be built took them with it).
struct Job<'a> {
    shared: &'a SharedArgs,
    args: &'a SeparateArgs,
    settings: SeparationSettings,
    runtime: Option<std::sync::Arc<Runtime>>,
    priors: Option<Vec<Prior>>,
}

impl Job<'_> {
    /// Separates one track into its output folder.
    fn separate(&mut self, track: &Track) -> Result<(), CliError> {
        let reader = AudioReader::open(&track.input)?;
        check_format(reader.sample_rate(), reader.channels()).map_err(SeparationError::from)?;
        let runtime = match &self.runtime {
            Some(runtime) => runtime.clone(),
            None => self.runtime.insert(self.shared.runtime()?).clone(),
        };
        let priors = match self.priors.take() {
            Some(priors) => priors,
            None => self.shared.load_priors(&runtime, &self.args.stems)?,
        };
        let mut separator = Separator::new(priors, self.settings, reader.sample_rate(), reader.channels())
            .map_err(|e| match e {
                SeparationError::Settings(e) => usage_error(e),
                other => CliError::from(other),
            })?;
        let result = self.stream(track, reader, &mut separator);
        self.priors = Some(separator.into_priors());
        result
    }

    /// Streams `reader` through `separator` into the track's folder, with a progress bar.
    fn stream(&self, track: &Track, reader: AudioReader, separator: &mut Separator) -> Result<(), CliError> {
        let bar = if self.args.quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(0)
        };
        bar.set_style(
            ProgressStyle::with_template("{spinner} frame {msg} [{bar:30}] {percent:>3}% eta {eta}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        refuse_replacing_the_input(&track.input, &track.output, separator.stem_names())?;
        let summary = separate_file(
            reader,
            &track.output,
            separator,
            interrupt::flag(),
            |p: JobProgress| {
                bar.set_length((p.frames * p.iterations_per_frame).max(1) as u64);
                bar.set_position((p.frame * p.iterations_per_frame + p.iteration) as u64);
                bar.set_message(format!("{}/{}", (p.frame + 1).min(p.frames), p.frames));
            },
        )?;
        bar.finish_and_clear();
        println!(
            "separated {:.1} s of audio into {} stems in {:.1} s, real-time factor {:.2} (wall time / audio time) -> {}",
            summary.audio_seconds,
            summary.outputs.len(),
            summary.wall_seconds,
            summary.real_time_factor(),
            track.output.display()
        );
        Ok(())
    }
}
