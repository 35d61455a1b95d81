//! `stemflow bench`: cost of separating one 5-s frame with the default settings (also the
//! realtime preset), the paper and nmf presets, the default without its NMF expert and (when the
//! priors have score graphs) `--separator sgld`, measured in the same run: the runs take turns,
//! one frame each per round, so a machine that slows down or speeds up during the bench weighs on
//! every run alike (medians over rounds; ratios are what to compare across machines).

use super::peak_memory::separate_peak_mib;
use super::shared::SharedArgs;
use super::CliError;
use crate::engine::files::audio_file::read_all;
use crate::engine::metrics::median;
use crate::engine::priors::prior::Prior;
use crate::engine::search::chain_settings::AnnealedSettings;
use crate::engine::search::chain_settings::LangevinSettings;
use crate::engine::search::separator::Separator;
use crate::engine::search::settings::{Preset, SearchKind, SeparationSettings};
use crate::engine::signal::frames::frame_len_at;
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
    /// Minutes of the input, looped, that `separate` runs on for its peak memory (0 = skip).
    #[arg(long, default_value_t = 10.0, value_name = "MINUTES")]
    pub memory_minutes: f64,
}

/// The shipped demo mix, the default bench input.
fn demo_mix() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/models/demo/mix.wav"))
}

/// Run `bench`: a warm-up round, then `repeat` timed rounds of one frame per run.
pub fn run(shared: &SharedArgs, args: BenchArgs) -> Result<(), CliError> {
    let input = args.input.clone().unwrap_or_else(demo_mix);
    let audio = read_all(&input)?;
    let runtime = shared.runtime()?;
    let mut priors = shared.load_priors(&runtime, &args.stems)?;
    let frame_len = frame_len_at(audio.sample_rate);
    let frame: Vec<Vec<f32>> = audio
        .channels
        .iter()
        .map(|c| (0..frame_len).map(|i| c.get(i).copied().unwrap_or(0.0)).collect())
        .collect();
    let frame_refs: Vec<&[f32]> = frame.iter().map(Vec::as_slice).collect();
    let names: Vec<String> = priors.iter().map(|p| p.stem().to_string()).collect();
    let threads = shared.threads;
    // The device the sessions run on: a GPU request may have fallen back to the CPU.
    let backend = priors.first().map_or(shared.device, Prior::backend);
    let device = if backend == shared.device {
        backend.to_string()
    } else {
        format!("{} (running on {backend})", shared.device)
    };
    println!(
        "bench: {} stems ({}), one 5-s frame of {} at {} Hz × {} ch, stems on {} thread(s), {} thread(s) per session, device {}, median of {}",
        names.len(),
        names.join(", "),
        input.display(),
        audio.sample_rate,
        audio.channels.len(),
        shared.with_threads(Preset::Default.settings()).stem_threads,
        threads,
        device,
        args.repeat
    );
    println!(
        "{:<8} {:>10} {:>13} {:>9} {:>17}",
        "run", "steps", "ms/step", "frame s", "real-time factor"
    );
    // The presets, the default without its NMF expert, then the Langevin separator with its
    // defaults when every prior has the `score` graph it needs.
    let mut runs: Vec<(String, SeparationSettings)> = [Preset::Default, Preset::Paper, Preset::Nmf]
        .into_iter()
        .map(|preset| (format!("{preset:?}").to_lowercase(), preset.settings()))
        .collect();
    // The default without its NMF expert: what the expert costs.
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
    let runs: Vec<(String, SeparationSettings)> = runs
        .into_iter()
        .map(|(name, settings)| {
            (
                name,
                with_iterations(shared.with_threads(settings), args.iterations),
            )
        })
        .collect();
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); runs.len()];
    let mut steps = vec![0usize; runs.len()];
    // Round 0 warms every run up (and checks its settings); rounds 1… are timed.
    for round in 0..=args.repeat {
        for (((_, settings), times), steps) in runs.iter().zip(&mut times).zip(&mut steps) {
            let mut separator = Separator::new(priors, *settings, audio.sample_rate, audio.channels.len())?;
            // The expert alone skips the flows' search: no steps.
            *steps = if settings.nmf_alone() {
                0
            } else {
                separator.steps_per_frame()
            };
            let start = Instant::now();
            separator.separate_frame(&frame_refs)?;
            if round > 0 {
                times.push(start.elapsed().as_secs_f64());
            }
            priors = separator.into_priors();
        }
    }
    let mut frame_seconds = Vec::new();
    for (((name, _), times), &steps) in runs.iter().zip(&times).zip(&steps) {
        let seconds = median(times);
        let ms_per_step = match steps {
            0 => "-".to_string(),
            n => format!("{:.1}", 1000.0 * seconds / n as f64),
        };
        println!(
            "{:<8} {:>10} {:>13} {:>9.2} {:>17.2}",
            name,
            steps,
            ms_per_step,
            seconds,
            seconds / 5.0
        );
        frame_seconds.push((name.clone(), seconds));
    }
    let time_of = |run: &str| {
        frame_seconds
            .iter()
            .find(|(name, _)| name == run)
            .map(|(_, s)| *s)
    };
    let (default, paper) = (
        time_of("default").unwrap_or(f64::NAN),
        time_of("paper").unwrap_or(f64::NAN),
    );
    println!(
        "ratio paper/default (frame time): {:.3}; paper/nmf: {:.3}",
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
        println!("ratio sgld/default (frame time): {:.3}", sgld / default);
    }
    if let Some(annealed) = time_of("annealed") {
        println!("ratio annealed/default (frame time): {:.3}", annealed / default);
    }
    if args.memory_minutes > 0.0 {
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
        let (peak, seconds) = separate_peak_mib(&audio, args.memory_minutes, &extra)?;
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
