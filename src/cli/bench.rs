//! `stemflow bench`: cost of separating one 5-s frame with the default settings (also the
//! realtime preset), the paper and nmf presets, the default without its NMF expert and (when the
//! priors have score graphs) `--separator sgld`, measured in the same run: the runs take turns,
//! one frame each per round, so a machine that slows down or speeds up during the bench weighs on
//! every run alike (medians over rounds; ratios are what to compare across machines). Then what a
//! user waits for: start-up and a clip's whole run as child processes, the plugin's latency, and
//! the peak memory of a long file.

use super::child_separate::{run_separate, write_clip};
use super::peak_memory::separate_peak_mib;
use super::shared::SharedArgs;
use super::CliError;
use crate::engine::files::audio_file::{read_all, AudioBuffer};
use crate::engine::metrics::median;
use crate::engine::priors::prior::Prior;
use crate::engine::search::chain_settings::AnnealedSettings;
use crate::engine::search::chain_settings::LangevinSettings;
use crate::engine::search::separator::Separator;
use crate::engine::search::settings::{Preset, SearchKind, SeparationSettings};
use crate::engine::search::stream_framing::{Framing, DEFAULT_PROCESSING_ALLOWANCE_SECONDS};
use clap::Args;
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Audio to take the 5-s frame from (default: the shipped demo mix).
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Stems to separate, comma-separated (default: every installed prior).
    #[arg(long, value_delimiter = ',')]
    pub stems: Vec<String>,
    /// Iterations (Langevin: steps) per frame (default: each run's own).
    #[arg(long)]
    pub iterations: Option<u32>,
    /// Timed frames per preset; the median is reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub repeat: u32,
    /// Seconds of the input (looped) the whole runs of `separate` take, default and paper
    /// preset, from process start to stems (0 = skip them and the start-up figure).
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    pub whole_run_seconds: f64,
    /// Minutes of the input, looped, that `separate` runs on for its peak memory (0 = skip).
    #[arg(long, default_value_t = 10.0, value_name = "MINUTES")]
    pub memory_minutes: f64,
}

/// The shipped demo mix, the default bench input.
fn demo_mix() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/models/demo/mix.wav"))
}

/// Run `bench`: the per-frame table, the whole runs (start-up, a clip from process start to its
/// stems, the plugin's latency), then the peak memory of a long file.
pub fn run(shared: &SharedArgs, args: BenchArgs) -> Result<(), CliError> {
    let input = args.input.clone().unwrap_or_else(demo_mix);
    let audio = read_all(&input)?;
    let runtime = shared.runtime()?;
    let priors = shared.load_priors(&runtime, &args.stems)?;
    let names: Vec<String> = priors.iter().map(|p| p.stem().to_string()).collect();
    // The device the sessions run on: a GPU request may have fallen back to the CPU.
    let backend = priors.first().map_or(shared.device, Prior::backend);
    let device = if backend == shared.device {
        backend.to_string()
    } else {
        format!("{} (running on {backend})", shared.device)
    };
    println!(
        "bench: {} stems ({}), one frame (each run's own length) of {} at {} Hz × {} ch, stems on {} thread(s), {} thread(s) per session, device {}, median of {}",
        names.len(),
        names.join(", "),
        input.display(),
        audio.sample_rate,
        audio.channels.len(),
        shared.with_threads(Preset::Default.settings()).stem_threads,
        shared.threads,
        device,
        args.repeat
    );
    let runs = frame_runs(shared, &priors, args.iterations);
    let factors = time_frames(priors, &runs, &audio, args.repeat)?;
    print_frame_ratios(&factors);
    let child_args = child_args(shared, &args);
    if args.whole_run_seconds > 0.0 {
        whole_runs(&audio, &args, &child_args)?;
    }
    print_plugin_latency(audio.sample_rate);
    if args.memory_minutes > 0.0 {
        let (peak, seconds) = separate_peak_mib(&audio, args.memory_minutes, &child_args)?;
        match peak {
            Some(mib) => println!(
                "peak RSS of separate on {} min of this input ({} Hz × {} ch, 1 iteration per frame): {mib:.0} MiB ({seconds:.0} s)",
                args.memory_minutes,
                audio.sample_rate,
                audio.channels.len()
            ),
            None => println!("peak RSS of separate: not measured on this platform"),
        }
    }
    Ok(())
}

/// The runs of the per-frame table: the presets (realtime: the default on a live stream's
/// frames), the default without its NMF expert (what the expert costs), then the Langevin separators with their defaults when every prior has the
/// graphs they need; each with `iterations` when given.
fn frame_runs(
    shared: &SharedArgs,
    priors: &[Prior],
    iterations: Option<u32>,
) -> Vec<(String, SeparationSettings)> {
    let mut runs: Vec<(String, SeparationSettings)> =
        [Preset::Default, Preset::Realtime, Preset::Paper, Preset::Nmf]
            .into_iter()
            .map(|preset| (format!("{preset:?}").to_lowercase(), preset.settings()))
            .collect();
    runs.push((
        "flows".into(),
        SeparationSettings {
            nmf_weight: 0.0,
            ..Preset::Default.settings()
        },
    ));
    if priors.iter().all(Prior::has_score) {
        let sgld = SeparationSettings {
            search: SearchKind::Langevin(LangevinSettings::DEFAULT),
            ..Preset::Default.settings()
        };
        runs.push(("sgld".into(), sgld));
    } else {
        println!("(sgld not measured: not every prior has a `score` graph)");
    }
    if priors.iter().all(Prior::has_noisy_score) {
        let annealed = SeparationSettings {
            search: SearchKind::Annealed(AnnealedSettings::DEFAULT),
            ..Preset::Default.settings()
        };
        runs.push(("annealed".into(), annealed));
    } else {
        println!("(annealed not measured: not every prior has an `annealing` section)");
    }
    runs.into_iter()
        .map(|(name, settings)| (name, with_iterations(shared.with_threads(settings), iterations)))
        .collect()
}

/// Times one frame of every run, taking turns: a warm-up round (which also checks each run's
/// settings), then `repeat` timed rounds; prints the table and returns each run's real-time
/// factor (median frame time over its hop: seconds of work per second of audio).
fn time_frames(
    mut priors: Vec<Prior>,
    runs: &[(String, SeparationSettings)],
    audio: &AudioBuffer,
    repeat: u32,
) -> Result<Vec<(String, f64)>, CliError> {
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); runs.len()];
    let mut steps = vec![0usize; runs.len()];
    for round in 0..=repeat {
        for (((_, settings), times), steps) in runs.iter().zip(&mut times).zip(&mut steps) {
            let mut separator = Separator::new(priors, *settings, audio.sample_rate, audio.channels.len())?;
            let frame = first_frame(audio, separator.frame_len());
            // The expert alone skips the flows' search: no steps.
            *steps = if settings.nmf_alone() {
                0
            } else {
                separator.steps_per_frame()
            };
            let start = Instant::now();
            separator.separate_frame(&frame.iter().map(Vec::as_slice).collect::<Vec<_>>())?;
            if round > 0 {
                times.push(start.elapsed().as_secs_f64());
            }
            priors = separator.into_priors();
        }
    }
    println!(
        "{:<8} {:>7} {:>10} {:>13} {:>9} {:>17}",
        "run", "frame", "steps", "ms/step", "time s", "real-time factor"
    );
    let mut factors = Vec::new();
    for (((name, settings), times), &steps) in runs.iter().zip(&times).zip(&steps) {
        let seconds = median(times);
        let ms_per_step = match steps {
            0 => "-".to_string(),
            n => format!("{:.1}", 1000.0 * seconds / n as f64),
        };
        // Real time advances by the hop per frame: a stream keeps up while a frame takes less.
        let hop = settings.frame_seconds - settings.overlap_seconds;
        println!(
            "{:<8} {:>6.1}s {:>10} {:>13} {:>9.2} {:>17.3}",
            name,
            settings.frame_seconds,
            steps,
            ms_per_step,
            seconds,
            seconds / hop
        );
        factors.push((name.clone(), seconds / hop));
    }
    Ok(factors)
}

/// The first `len` samples of every channel of `audio`, zero-padded.
fn first_frame(audio: &AudioBuffer, len: usize) -> Vec<Vec<f32>> {
    audio
        .channels
        .iter()
        .map(|c| (0..len).map(|i| c.get(i).copied().unwrap_or(0.0)).collect())
        .collect()
}

/// The ratios of the runs' real-time factors to the default's (and the paper's to the NMF's):
/// runs with frames of different lengths compare per second of audio.
fn print_frame_ratios(factors: &[(String, f64)]) {
    let time_of = |run: &str| factors.iter().find(|(name, _)| name == run).map(|(_, s)| *s);
    let default = time_of("default").unwrap_or(f64::NAN);
    let paper = time_of("paper").unwrap_or(f64::NAN);
    println!(
        "ratio paper/default (real-time factor): {:.3}; paper/nmf: {:.3}",
        paper / default,
        paper / time_of("nmf").unwrap_or(f64::NAN)
    );
    if let Some(flows) = time_of("flows") {
        println!(
            "ratio default/flows (the NMF expert's cost): {:.3}",
            default / flows
        );
    }
    if let Some(sgld) = time_of("sgld") {
        println!("ratio sgld/default (real-time factor): {:.3}", sgld / default);
    }
    if let Some(annealed) = time_of("annealed") {
        println!(
            "ratio annealed/default (real-time factor): {:.3}",
            annealed / default
        );
    }
}

/// The options this bench was given that a child `separate` must share.
fn child_args(shared: &SharedArgs, args: &BenchArgs) -> Vec<String> {
    let mut extra = vec![
        "--threads".to_string(),
        shared.threads.to_string(),
        "--device".to_string(),
        shared.device.to_string(),
    ];
    if let Some(lib) = &shared.ort_lib {
        extra.extend(["--ort-lib".to_string(), lib.display().to_string()]);
    }
    if let Some(n) = shared.stem_threads {
        extra.extend(["--stem-threads".to_string(), n.to_string()]);
    }
    if !args.stems.is_empty() {
        extra.extend(["--stems".to_string(), args.stems.join(",")]);
    }
    if let Some(dir) = &shared.priors {
        extra.extend(["--priors".to_string(), dir.display().to_string()]);
    }
    extra
}

/// Whole runs of `separate` as a user starts them, taking turns `repeat` times: start-up (one
/// second of silence, whose frame skips the search, from process start to its stems), then a
/// clip of the input with the default and with the paper preset; medians, real-time factors and
/// the ratio paper/default.
fn whole_runs(audio: &AudioBuffer, args: &BenchArgs, child_args: &[String]) -> Result<(), CliError> {
    let dir = tempfile::tempdir().map_err(|e| CliError::Usage(format!("no temporary folder: {e}")))?;
    let silence = dir.path().join("silence.wav");
    let clip = dir.path().join("clip.wav");
    write_clip(&silence, audio, 1.0, true)?;
    write_clip(&clip, audio, args.whole_run_seconds, false)?;
    let out = dir.path().join("stems");
    let with_preset = |preset: &str| {
        let mut list = child_args.to_vec();
        list.extend(["--preset".to_string(), preset.to_string()]);
        list
    };
    let (default_args, paper_args) = (with_preset("default"), with_preset("paper"));
    let mut times = [Vec::new(), Vec::new(), Vec::new()];
    // Round 0 warms the page cache; rounds 1… are timed.
    for round in 0..=args.repeat {
        let start_up = run_separate(&silence, &out, &default_args)?;
        let default = run_separate(&clip, &out, &default_args)?;
        let paper = run_separate(&clip, &out, &paper_args)?;
        if round > 0 {
            for (list, seconds) in times.iter_mut().zip([start_up, default, paper]) {
                list.push(seconds);
            }
        }
    }
    let [start_up, default, paper] = times.map(|t| median(&t));
    let seconds = args.whole_run_seconds;
    println!("start-up (separate on 1 s of silence, process start to stems, no search): {start_up:.3} s");
    println!(
        "whole run on {seconds} s of the input (process start to stems): default {default:.2} s \
         (real-time factor {:.3}), paper {paper:.2} s ({:.3}); ratio paper/default {:.2}",
        default / seconds,
        paper / seconds,
        paper / default
    );
    Ok(())
}

/// The latency the plugin reports at `sample_rate` with its default processing allowance.
fn print_plugin_latency(sample_rate: u32) {
    let framing = Framing::new(sample_rate, DEFAULT_PROCESSING_ALLOWANCE_SECONDS);
    let rate = f64::from(sample_rate);
    println!(
        "plugin latency at {sample_rate} Hz: {:.3} s (a {:.3}-s frame and a {:.3}-s processing allowance)",
        framing.latency as f64 / rate,
        framing.frame_len as f64 / rate,
        framing.allowance as f64 / rate
    );
}

/// `settings` with `iterations` (Langevin: steps) per frame, when given.
fn with_iterations(mut settings: SeparationSettings, iterations: Option<u32>) -> SeparationSettings {
    if let Some(iterations) = iterations {
        settings.iterations = iterations as usize;
        match &mut settings.search {
            SearchKind::Langevin(langevin) => langevin.steps = iterations as usize,
            SearchKind::Annealed(annealed) => annealed.steps_per_level = iterations as usize,
            SearchKind::Adam => {}
        }
    }
    settings
}
