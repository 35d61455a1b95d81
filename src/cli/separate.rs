//! `stemflow separate`: one WAV per stem, a progress bar, and a summary line.

use super::interrupt;
use super::shared::SharedArgs;
use super::CliError;
use crate::engine::files::audio_file::AudioReader;
use crate::engine::files::separate_file::{separate_file, JobProgress};
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
    /// The mix to separate (WAV, FLAC, OGG, MP3, AIFF; any rate and channel count).
    pub input: PathBuf,
    /// Output folder: receives `<stem>.wav` for every stem.
    #[arg(short, long, value_name = "DIR")]
    pub output: PathBuf,
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

/// Run `separate`: open the input, load runtime and priors, stream the file through the engine.
pub fn run(shared: &SharedArgs, args: SeparateArgs) -> Result<(), CliError> {
    let settings = shared.with_threads(args.settings()?);
    refuse_repeated_stems(&args.stems)?;
    let reader = AudioReader::open(&args.input)?;
    let runtime = shared.runtime()?;
    let priors = shared.load_priors(&runtime, &args.stems)?;
    let mut separator =
        Separator::new(priors, settings, reader.sample_rate(), reader.channels()).map_err(|e| match e {
            SeparationError::Settings(e) => usage_error(e),
            other => CliError::from(other),
        })?;
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(0)
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} frame {msg} [{bar:30}] {percent:>3}% eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    refuse_replacing_the_input(&args.input, &args.output, separator.stem_names())?;
    interrupt::install();
    let summary = separate_file(
        reader,
        &args.output,
        &mut separator,
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
        args.output.display()
    );
    Ok(())
}
