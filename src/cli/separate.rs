//! `stemflow separate`: one file per stem for every input track, in WAV or FLAC; progress bars
//! or JSON lines; a batch goes on past a failing track, skips tracks already complete, can be one
//! shard of a catalogue, and ends with a summary (and a JSON report if asked).

use super::batch::{expand_inputs, plan_tracks, Track, AUDIO_EXTENSIONS, DEFAULT_OUTPUT};
use super::batch_report::{BatchReport, TrackReport, TrackStatus};
use super::interrupt;
use super::message;
use super::progress::{ProgressMode, RunProgress};
use super::shard::Shard;
use super::shared::SharedArgs;
use super::track_lock::{TrackLock, LOCK_FILE};
use super::track_panic;
use super::track_record::{job_fingerprint, InputIdentity, JobIdentity, TrackRecord, RECORD_FILE};
use super::walk::has_extension;
use super::CliError;
use crate::engine::files::audio_file::{AudioError, AudioReader};
use crate::engine::files::separate_file::{separate_file, JobSummary, SeparateFileError};
use crate::engine::files::stem_format::{Container, SampleDepth, StemFormat};
use crate::engine::limits::check_format;
use crate::engine::priors::domain::Domain;
use crate::engine::priors::prior::Prior;
use crate::engine::priors::runtime::Runtime;
use crate::engine::search::chain_settings::AnnealedSettings;
use crate::engine::search::chain_settings::{LangevinDomain, LangevinForm, LangevinSettings};
use crate::engine::search::separation_error::SeparationError;
use crate::engine::search::separator::Separator;
use crate::engine::search::settings::{
    Objective, OutputMode, Preset, SearchKind, SeparationSettings, SettingsError, WAVEFORM_ANNEALED,
    WAVEFORM_LANGEVIN,
};
use clap::{Args, ValueEnum};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The objective named on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ObjectiveArg {
    /// Generalised KL divergence only (γ = 0).
    Mle,
    /// KL minus γ times the priors' log-density.
    Map,
}

/// The container named by `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// WAV (default: 32-bit float).
    Wav,
    /// FLAC, lossless, about half the size (default: 24-bit; at most 8 channels).
    Flac,
}

/// The sample depth named by `--bits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BitsArg {
    /// 16-bit integer, TPDF-dithered.
    #[value(name = "16")]
    Int16,
    /// 24-bit integer.
    #[value(name = "24")]
    Int24,
    /// 32-bit float (WAV only).
    #[value(name = "32f")]
    Float32,
}

/// Arguments of `separate`.
#[derive(Debug, Args)]
pub struct SeparateArgs {
    /// The mixes to separate (WAV, FLAC, OGG, MP3, M4A, AIFF; any rate and channel count): files, and
    /// folders searched recursively for audio.
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
    /// Output folder. One input: receives its `<stem>.<ext>` files. Several: one folder per
    /// track, `DIR/<track>/<stem>.<ext>` (default `stems/<track>/`, also for one input).
    #[arg(short, long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// File format of the stems.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<FormatArg>,
    /// Sample depth of the stems: 16 (dithered), 24, or 32f (float; default for WAV). FLAC
    /// defaults to 24.
    #[arg(long, value_enum, value_name = "BITS")]
    pub bits: Option<BitsArg>,
    /// Separate every track again, even one whose complete stems from the same priors and
    /// settings are already in its folder (those are skipped otherwise).
    #[arg(long)]
    pub force: bool,
    /// Only share K of N of the tracks (K from 1): those at positions K, K+N, … of the inputs
    /// sorted by path, so N machines or jobs given the same inputs split a catalogue.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<Shard>,
    /// Write a JSON report of every track (status, wall time, real-time factor) to FILE.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Progress as JSON lines on standard output (one object per event), for other programs.
    #[arg(long, conflicts_with = "quiet")]
    pub json: bool,
    /// Stems to separate, comma-separated (default: every installed prior).
    #[arg(long, value_delimiter = ',')]
    pub stems: Vec<String>,
    /// Settings to start from (`default`; `realtime`, what the plugin plays with: the same;
    /// `paper`: the paper's; `nmf`: the NMF dictionaries alone, fastest); the options below
    /// override them.
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
    /// Output mode: consistent (stems sum to the mix), mixture-phase (the paper's) or, with
    /// time-domain (waveform) priors, waveform (each stem is its chain's waveform; the stems need
    /// not sum to the mix).
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
    /// Seconds in [1, 5] of one separation frame (default 5, the priors' training length;
    /// shorter frames are what the plugin's latency is made of). The overlap between frames
    /// must stay at most half a frame.
    #[arg(long, value_name = "SECONDS")]
    pub frame_seconds: Option<f64>,
    /// Weight w in [0, 1] of the NMF expert (each prior's NMF dictionary fitted to the mix) in
    /// the masks gᵢ^(1−w)·nᵢ^w: 0 = the flows alone (the paper preset), 1 = the NMF alone
    /// (default 0.5). Used when every prior has a dictionary.
    #[arg(long, value_name = "W")]
    pub nmf_weight: Option<f32>,
    /// Multiplicative updates of the NMF expert per 5-s frame (default 50).
    #[arg(long, value_name = "N")]
    pub nmf_iterations: Option<u32>,
    /// How each frame's stems are found: `adam` (the latent search of the presets), `sgld`
    /// (Langevin chains under the priors' scores; needs priors with a `score` graph) or
    /// `annealed` (Langevin chains down the priors' noise ladder; needs priors with an
    /// `annealing` section).
    #[arg(long, value_enum, default_value = "adam")]
    pub separator: SeparatorArg,
    /// SGLD: the update rule (Frank & Ilse's Algorithm 1 as printed, or the textbook rule with a
    /// Gaussian or the KL likelihood of the mixture). Default textbook-kl; textbook-gaussian for
    /// time-domain (waveform) priors, on which the KL rule is not defined.
    #[arg(long, value_enum)]
    pub sgld_form: Option<SgldFormArg>,
    /// SGLD: where the chains move (magnitudes or log-magnitudes).
    #[arg(long, value_enum, default_value = "log")]
    pub sgld_domain: SgldDomainArg,
    /// SGLD: steps per 5-s frame (default 100; 200 for waveform priors); annealed: steps per
    /// noise level (default 20; 50 for waveform priors).
    #[arg(long)]
    pub steps: Option<u32>,
    /// SGLD: step size η (default 0.1; 1e-4 for waveform priors); annealed: the step at the
    /// ladder's largest noise level, scaled by (σ/σ₁)² at level σ (default 0.05; 0.01 for
    /// waveform priors).
    #[arg(long)]
    pub eta: Option<f32>,
    /// SGLD: width σ of the mixture likelihood (its weight is 1/σ²; default 1, in the chains'
    /// domain; 0.02 for waveform priors, in amplitude).
    #[arg(long)]
    pub sigma: Option<f32>,
    /// Annealed: width of the mixture likelihood relative to the noise level (its weight is
    /// 1/(λσ)²; default 0.5; 1 for waveform priors).
    #[arg(long, value_name = "λ")]
    pub likelihood_scale: Option<f32>,
    /// SGLD and annealed: seed of the chains' noise (the same seed gives the same stems).
    #[arg(long, default_value_t = LangevinSettings::DEFAULT.seed)]
    pub seed: u64,
    /// SGLD: RMSprop-preconditioned steps for the textbook rules (default `true`); annealed: the
    /// inverse-Fisher metric of running squared gradients (default `false`).
    #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set)]
    pub sgld_precondition: Option<bool>,
    /// SGLD: stems are the chains' mean over the second half of the steps (`true`) or their
    /// last state (`false`); annealed: the mean over the last noise level's steps.
    #[arg(long, value_name = "BOOL", default_value_t = LangevinSettings::DEFAULT.average, action = clap::ArgAction::Set)]
    pub sgld_average: bool,
    /// No progress bars or summary lines: errors only.
    #[arg(long)]
    pub quiet: bool,
}

/// `--separator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SeparatorArg {
    /// Adam over the priors' latents (the presets).
    Adam,
    /// Stochastic gradient Langevin dynamics over the stems.
    Sgld,
    /// Annealed Langevin dynamics under the priors' noise-conditioned scores.
    Annealed,
}

/// `--sgld-form`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SgldFormArg {
    /// Algorithm 1 of Frank & Ilse as printed (noise 2√η, constraint step −η/σ²·(m − mean)).
    AsWritten,
    /// Noise √(2η), gradient of a Gaussian likelihood of the mixture.
    TextbookGaussian,
    /// Noise √(2η), gradient of the KL data term of the Adam search.
    TextbookKl,
}

/// `--sgld-domain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SgldDomainArg {
    /// Magnitudes.
    Magnitude,
    /// Natural-log magnitudes.
    Log,
}

/// The option that sets a field of [`SeparationSettings`] (for the engine's range errors).
fn option_for(field: &str) -> &'static str {
    match field {
        "iterations" => "--iterations",
        "adam.learning_rate" => "--learning-rate",
        "objective.gamma" => "--gamma",
        "mask_exponent" => "--mask-exponent",
        "frame_seconds" | "overlap_seconds" => "--frame-seconds",
        "calibration_strength" => "--level-calibration",
        "calibration_trim" => "--level-trim",
        "nmf_weight" => "--nmf-weight",
        "nmf_iterations" => "--nmf-iterations",
        "stem_threads" => "--stem-threads",
        "search.steps" | "search.steps_per_level" => "--steps",
        "search.eta" => "--eta",
        "search.likelihood_scale" => "--likelihood-scale",
        "search.sigma" => "--sigma",
        _ => "--preset",
    }
}

/// The engine's refusal of a setting, said in terms of the option that set it.
fn usage_error(error: SettingsError) -> CliError {
    CliError::Usage(format!("{}: {error}", option_for(error.field)))
}

impl SeparateArgs {
    /// The stems' file format from `--format` and `--bits`.
    fn stem_format(&self) -> Result<StemFormat, CliError> {
        let container = match self.format.unwrap_or(FormatArg::Wav) {
            FormatArg::Wav => Container::Wav,
            FormatArg::Flac => Container::Flac,
        };
        let Some(bits) = self.bits else {
            return Ok(StemFormat::with_default_depth(container));
        };
        let depth = match bits {
            BitsArg::Int16 => SampleDepth::Int16,
            BitsArg::Int24 => SampleDepth::Int24,
            BitsArg::Float32 => SampleDepth::Float32,
        };
        StemFormat::new(container, depth).map_err(|e| CliError::Usage(format!("--bits: {e}")))
    }

    /// Which progress display the flags ask for.
    fn progress_mode(&self) -> ProgressMode {
        if self.json {
            ProgressMode::Json
        } else if self.quiet {
            ProgressMode::Quiet
        } else {
            ProgressMode::Bars
        }
    }

    /// [`SeparateArgs::settings_for`] spectrogram priors (what a run starts from before its priors
    /// are loaded).
    fn settings(&self) -> Result<SeparationSettings, CliError> {
        self.settings_for(Domain::Spectrogram)
    }

    /// The preset with every option given applied, the Langevin defaults those of priors of
    /// `domain`, or why the options contradict each other (each value's range is the engine's,
    /// checked when the separator is built).
    fn settings_for(&self, domain: Domain) -> Result<SeparationSettings, CliError> {
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
        if let Some(seconds) = self.frame_seconds {
            settings.frame_seconds = seconds;
        }
        if let Some(p) = self.mask_exponent {
            settings.mask_exponent = p;
        }
        if let Some(w) = self.nmf_weight {
            settings.nmf_weight = w;
        }
        if let Some(n) = self.nmf_iterations {
            settings.nmf_iterations = n as usize;
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
        let (langevin_defaults, annealed_defaults, form_default) = match domain {
            Domain::Spectrogram => (
                LangevinSettings::DEFAULT,
                AnnealedSettings::DEFAULT,
                SgldFormArg::TextbookKl,
            ),
            Domain::Waveform => (
                WAVEFORM_LANGEVIN,
                WAVEFORM_ANNEALED,
                SgldFormArg::TextbookGaussian,
            ),
        };
        if self.separator == SeparatorArg::Annealed {
            let defaults = annealed_defaults;
            settings.search = SearchKind::Annealed(AnnealedSettings {
                steps_per_level: self.steps.map_or(defaults.steps_per_level, |n| n as usize),
                eta: self.eta.unwrap_or(defaults.eta),
                likelihood_scale: self.likelihood_scale.unwrap_or(defaults.likelihood_scale),
                seed: self.seed,
                average: self.sgld_average,
                preconditioned: self.sgld_precondition.unwrap_or(defaults.preconditioned),
            });
        }
        if self.separator == SeparatorArg::Sgld {
            let defaults = langevin_defaults;
            settings.search = SearchKind::Langevin(LangevinSettings {
                steps: self.steps.map_or(defaults.steps, |n| n as usize),
                eta: self.eta.unwrap_or(defaults.eta),
                sigma: self.sigma.unwrap_or(defaults.sigma),
                form: match self.sgld_form.unwrap_or(form_default) {
                    SgldFormArg::AsWritten => LangevinForm::AsWritten,
                    SgldFormArg::TextbookGaussian => LangevinForm::TextbookGaussian,
                    SgldFormArg::TextbookKl => LangevinForm::TextbookKl,
                },
                domain: match self.sgld_domain {
                    SgldDomainArg::Magnitude => LangevinDomain::Magnitude,
                    SgldDomainArg::Log => LangevinDomain::LogMagnitude,
                },
                seed: self.seed,
                preconditioned: self.sgld_precondition.unwrap_or(defaults.preconditioned),
                average: self.sgld_average,
            });
        }
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
    format: StemFormat,
    stems: impl Iterator<Item = &'a str>,
) -> Result<(), CliError> {
    let Ok(input) = input.canonicalize() else {
        return Ok(());
    };
    for stem in stems {
        let target = out_dir.join(format.file_name(stem));
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

/// `--report FILE` is a new file or an earlier run's report: never an input, a stem, a record or
/// anything else it would destroy.
fn refuse_report_path(path: &Path, inputs: &[PathBuf]) -> Result<(), CliError> {
    let refuse = |found: &str| {
        Err(CliError::Usage(format!(
            "--report {}: expected a new file or an earlier Stemflow report, found {found}",
            path.display()
        )))
    };
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    if name == RECORD_FILE || name == LOCK_FILE {
        return refuse("the name of a track's record");
    }
    let real = path.canonicalize().ok();
    if real.is_some() && inputs.iter().any(|i| i.canonicalize().ok() == real) {
        return refuse("one of the inputs");
    }
    if has_extension(path, &AUDIO_EXTENSIONS) {
        return refuse("an audio file name (a stem or an input)");
    }
    match std::fs::metadata(path) {
        Err(_) => Ok(()),
        Ok(meta) if meta.is_dir() => refuse("a folder"),
        Ok(meta) if meta.len() > MAX_REPORT_BYTES => refuse("a file too large to be a report"),
        Ok(_) if is_report(path) => Ok(()),
        Ok(_) => refuse("an existing file that is not a Stemflow report"),
    }
}

/// The largest file `--report` takes for an earlier report.
const MAX_REPORT_BYTES: u64 = 256 << 20;

/// Whether `path` holds a report [`BatchReport`] wrote (a JSON object naming `stemflow` and its
/// `tracks`).
fn is_report(path: &Path) -> bool {
    std::fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .is_some_and(|v| v["stemflow"].is_string() && v["tracks"].is_array())
}

/// Run `separate`: load the runtime and priors once, then stream every track through the engine.
/// One track fails the command with its error; in a batch a failing track is reported and the
/// others go on, and the command fails at the end naming the tracks that did not separate.
/// Tracks whose complete stems are already there are skipped unless `--force`.
pub fn run(shared: &SharedArgs, args: SeparateArgs) -> Result<(), CliError> {
    let settings = shared.with_threads(args.settings()?);
    let format = args.stem_format()?;
    refuse_repeated_stems(&args.stems)?;
    if let Some(report) = &args.report {
        refuse_report_path(report, &args.inputs)?;
    }
    let base = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_OUTPUT));
    let files = expand_inputs(&args.inputs, &base);
    if files.is_empty() {
        return Err(CliError::Usage(format!(
            "no audio files ({}; folders holding separated stems left out) in {}",
            AUDIO_EXTENSIONS.join(", "),
            args.inputs
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    // Names are given over the whole list, so every shard names a track the same way.
    let mut tracks = plan_tracks(&files, args.output.as_deref());
    let progress_mode = args.progress_mode();
    if let Some(shard) = args.shard {
        let all = tracks.len();
        tracks = shard.select(tracks, |t| t.input.clone());
        if progress_mode == ProgressMode::Bars {
            println!("shard {shard}: {} of {all} tracks", tracks.len());
        }
    }
    // Once for the whole run: a Ctrl-C between two tracks stops the next one at its start.
    interrupt::install();
    track_panic::install();
    let base_existed = base.exists();
    let progress = RunProgress::new(progress_mode, tracks.len());
    let mut job = Job {
        shared,
        args: &args,
        settings,
        format,
        runtime: None,
        priors: None,
        fingerprint: None,
        progress: &progress,
    };
    // One track fails the command with its own error. A batch loads what every track needs
    // first, so a missing runtime or prior stops it once instead of failing each track.
    let single = tracks.len() == 1;
    if !single && !tracks.is_empty() {
        job.load()?;
    }
    let mut reports = Vec::with_capacity(tracks.len());
    let mut failed = Vec::new();
    let mut ending = None;
    for (i, track) in tracks.iter().enumerate() {
        let started = Instant::now();
        let outcome = track_panic::isolate(|| job.separate(i, track)).unwrap_or_else(|panic| {
            // Whatever the track held went with the unwinding; the next one loads afresh.
            job.priors = None;
            Err(CliError::Panic(panic))
        });
        let report = track_report(track, &outcome, started);
        progress.track_finished(&report);
        reports.push(report);
        match outcome {
            Ok(_) => {}
            Err(error @ CliError::Separate(SeparateFileError::Stopped)) => {
                reports.extend(tracks[i + 1..].iter().map(pending));
                ending = Some(error);
                break;
            }
            Err(error) if single => ending = Some(error),
            Err(error) => {
                message::error(format!("{}: {error}", track.input.display()));
                failed.push(track.input.display().to_string());
            }
        }
    }
    let report = BatchReport::new(args.shard.map(|s| s.to_string()), reports);
    progress.finish(report.separated, report.skipped, report.failed);
    if !single && ending.is_none() {
        progress.say(&format!(
            "{} of {} tracks separated{}",
            report.separated,
            tracks.len(),
            if report.skipped > 0 {
                format!(", {} skipped as already complete", report.skipped)
            } else {
                String::new()
            }
        ));
    }
    if !base_existed {
        // Only if empty: a run that wrote nothing leaves no output folder.
        let _ = std::fs::remove_dir(&base);
    }
    job.write_report(&report)?;
    match ending {
        Some(CliError::Separate(SeparateFileError::Stopped)) if report.separated > 0 => {
            Err(CliError::StoppedInBatch {
                separated: report.separated,
                total: tracks.len(),
            })
        }
        Some(error) => Err(error),
        None if failed.is_empty() => Ok(()),
        None => Err(CliError::Batch {
            failed,
            total: tracks.len(),
        }),
    }
}

/// The report line of `track`, started at `started`, from its outcome.
fn track_report(track: &Track, outcome: &Result<Outcome, CliError>, started: Instant) -> TrackReport {
    let mut report = pending(track);
    report.wall_seconds = started.elapsed().as_secs_f64();
    match outcome {
        Ok(Outcome::Separated(summary)) => {
            report.status = TrackStatus::Separated;
            report.audio_seconds = Some(summary.audio_seconds);
            report.real_time_factor = Some(summary.real_time_factor());
            report.warnings = summary_warnings(summary, &track.input);
        }
        Ok(Outcome::Skipped) => report.status = TrackStatus::Skipped,
        Err(CliError::Separate(SeparateFileError::Stopped)) => report.status = TrackStatus::Stopped,
        Err(error) => {
            report.status = TrackStatus::Failed;
            report.error = Some(error.to_string());
        }
    }
    report
}

/// The report line of a track the run never reached.
fn pending(track: &Track) -> TrackReport {
    TrackReport {
        input: track.input.display().to_string(),
        output: track.output.display().to_string(),
        status: TrackStatus::Pending,
        wall_seconds: 0.0,
        audio_seconds: None,
        real_time_factor: None,
        error: None,
        warnings: Vec::new(),
    }
}

/// What a separated track's run warns about, one sentence each naming the file: packets of the
/// input that could not be decoded, samples clipped in integer stems.
fn summary_warnings(summary: &JobSummary, input: &Path) -> Vec<String> {
    let mut warnings = Vec::new();
    if !summary.decode_damage.is_none() {
        let rate = summary.sample_rate;
        warnings.push(format!(
            "{}: {}",
            input.display(),
            summary.decode_damage.describe(rate)
        ));
    }
    if summary.clipped_samples > 0 {
        let folder = summary
            .outputs
            .first()
            .and_then(|p| p.parent())
            .unwrap_or(Path::new(""));
        warnings.push(format!(
            "{}: {} samples were louder than full scale and were clipped in the {} stems; \
             --bits 32f keeps them",
            folder.display(),
            summary.clipped_samples,
            summary.format
        ));
    }
    warnings
}

/// What became of one track.
enum Outcome {
    /// Separated, in this time.
    Separated(JobSummary),
    /// Already complete.
    Skipped,
}

/// What a run keeps from one track to the next: the runtime and the priors, loaded when the first
/// track needs them (and again after a separator that could not be built took them with it).
struct Job<'a> {
    shared: &'a SharedArgs,
    args: &'a SeparateArgs,
    settings: SeparationSettings,
    format: StemFormat,
    runtime: Option<std::sync::Arc<Runtime>>,
    priors: Option<Vec<Prior>>,
    /// What decides the stems besides the input ([`job_fingerprint`]), once the priors are known.
    fingerprint: Option<String>,
    progress: &'a RunProgress,
}

impl Job<'_> {
    /// Loads the runtime and the priors if they are not loaded.
    fn load(&mut self) -> Result<(), CliError> {
        let runtime = match &self.runtime {
            Some(runtime) => runtime.clone(),
            None => self.runtime.insert(self.shared.runtime()?).clone(),
        };
        if self.priors.is_none() {
            let priors = self.shared.load_priors(&runtime, &self.args.stems)?;
            // Time-domain priors take their own Langevin defaults (a mixed set is refused by the
            // separator).
            if !priors.is_empty() && priors.iter().all(|p| p.domain() == Domain::Waveform) {
                self.settings = self
                    .shared
                    .with_threads(self.args.settings_for(Domain::Waveform)?);
            }
            if self.fingerprint.is_none() {
                self.fingerprint = Some(self.fingerprint_of(&runtime, &priors));
            }
            self.priors = Some(priors);
        }
        Ok(())
    }

    /// The fingerprint of this run's stems with `priors` on `runtime`: the runtime's version,
    /// the priors (device and verified manifest), settings (less the thread count, which does not
    /// change the result) and format.
    fn fingerprint_of(&self, runtime: &Runtime, priors: &[Prior]) -> String {
        let identities: Vec<(String, String, Vec<u8>)> = priors
            .iter()
            .map(|p| {
                let manifest = serde_json::to_vec(p.manifest()).unwrap_or_default();
                (p.stem().to_string(), format!("{:?}", p.backend()), manifest)
            })
            .collect();
        let settings = SeparationSettings {
            stem_threads: 1,
            ..self.settings
        };
        job_fingerprint(&JobIdentity {
            runtime: &runtime.version().to_string(),
            priors: &identities,
            settings: &format!("{settings:?}"),
            format: &self.format.to_string(),
        })
    }

    /// Separates track `index` into its output folder, or skips it if its complete stems are
    /// there already.
    fn separate(&mut self, index: usize, track: &Track) -> Result<Outcome, CliError> {
        self.progress.track_started(
            index,
            &track.input.display().to_string(),
            &track.output.display().to_string(),
        );
        let reader = AudioReader::open(&track.input)?;
        check_format(reader.sample_rate(), reader.channels()).map_err(SeparationError::from)?;
        self.load()?;
        let fingerprint = self.fingerprint.clone().expect("set by load");
        // Held until the track is written or skipped, so no other run works on its folder.
        let _lock = TrackLock::acquire(&track.output)?;
        let input = InputIdentity::of(&track.input).ok();
        if let (false, Some(input)) = (self.args.force, &input) {
            if TrackRecord::is_complete_in(&track.output, input, &fingerprint) {
                self.progress.say(&format!(
                    "skipped {}: its complete stems from the same priors and settings are in {} \
                     (--force separates it again)",
                    track.input.display(),
                    track.output.display()
                ));
                return Ok(Outcome::Skipped);
            }
        }
        // Stems about to be replaced are never taken as complete, whatever happens next.
        TrackRecord::remove(&track.output).map_err(|source| AudioError::Io {
            path: track.output.join(RECORD_FILE),
            source,
        })?;
        let priors = self.priors.take().expect("loaded above");
        let mut separator = Separator::new(priors, self.settings, reader.sample_rate(), reader.channels())
            .map_err(|e| match e {
                SeparationError::Settings(e) => usage_error(e),
                other => CliError::from(other),
            })?;
        let result = self.stream(index, track, reader, &mut separator);
        self.priors = Some(separator.into_priors());
        let summary = result?;
        if let Some(input) = input {
            if let Err(e) = TrackRecord::new(input, fingerprint, &summary.outputs).write(&track.output) {
                message::warning(format!(
                    "{}: the stems are complete, but the record that lets a later run skip them \
                     could not be written ({e})",
                    track.output.display()
                ));
            }
        }
        Ok(Outcome::Separated(summary))
    }

    /// Streams `reader` through `separator` into the track's folder, with a progress display.
    fn stream(
        &self,
        index: usize,
        track: &Track,
        reader: AudioReader,
        separator: &mut Separator,
    ) -> Result<JobSummary, CliError> {
        refuse_replacing_the_input(&track.input, &track.output, self.format, separator.stem_names())?;
        let bar = self.progress.track_bar(index);
        let summary = separate_file(
            reader,
            &track.output,
            self.format,
            separator,
            interrupt::flag(),
            |p| bar.update(p),
        )?;
        drop(bar);
        self.progress.say(&format!(
            "separated {:.1} s of audio into {} stems in {:.1} s, real-time factor {:.2} (wall time / audio time) -> {}",
            summary.audio_seconds,
            summary.outputs.len(),
            summary.wall_seconds,
            summary.real_time_factor(),
            track.output.display()
        ));
        for warning in summary_warnings(&summary, &track.input) {
            message::warning(warning);
        }
        Ok(summary)
    }

    /// Writes `report` to the `--report` file, if one was asked for.
    fn write_report(&self, report: &BatchReport) -> Result<(), CliError> {
        let Some(path) = &self.args.report else {
            return Ok(());
        };
        report.write(path).map_err(|source| {
            CliError::Audio(AudioError::Io {
                path: path.clone(),
                source,
            })
        })
    }
}
