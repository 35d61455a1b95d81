//! Realtime pacing bench: plays audio through the built plugin in the in-repo CLAP host
//! (`tests/support/clap_host.rs`) in realtime mode, handing each block over no earlier than its
//! time on the wall clock, as a DAW does, and reports whether the worker kept up.
//!
//! ```sh
//! cargo run --release --example realtime_pacing -- [--seconds 120] [--input FILE] [--block 512]
//! ```
//!
//! Prints the reported latency, the segments (one hop each) that came out separated and those played dry
//! (before the priors had loaded, and after: late, i.e. frames behind), and the worker's own
//! real-time factor from the line the plugin logs when the activation ends. A segment counts as
//! behind when part of it is the dry fallback: the first stem output exactly the delayed input's
//! equal share (what the plugin plays while a segment is late), away from the short ramps at its
//! ends.

#[path = "../tests/support/clap_host.rs"]
mod host;

use host::*;
use std::path::PathBuf;
use stemflow::engine::files::audio_file::read_all;
use stemflow::engine::search::stream_framing::{Framing, DEFAULT_PROCESSING_ALLOWANCE_SECONDS};

/// What the command line asks for.
struct Options {
    /// Seconds of audio to play (the input is looped to this length).
    seconds: f64,
    /// The audio to play (default: the shipped demo mix).
    input: PathBuf,
    /// Host block size in samples.
    block: usize,
}

fn options() -> Options {
    let mut options = Options {
        seconds: 120.0,
        input: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/models/demo/mix.wav")),
        block: 512,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{arg} needs a value")))
        };
        match arg.as_str() {
            "--seconds" => options.seconds = value().parse().unwrap_or_else(|_| usage("--seconds: a number")),
            "--input" => options.input = PathBuf::from(value()),
            "--block" => options.block = value().parse().unwrap_or_else(|_| usage("--block: a count")),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    if !options.seconds.is_finite() || options.seconds <= 0.0 || options.block == 0 {
        usage("--seconds and --block must be positive");
    }
    options
}

fn usage(problem: &str) -> ! {
    eprintln!("realtime_pacing: {problem}\nusage: realtime_pacing [--seconds S] [--input FILE] [--block N]");
    std::process::exit(2)
}

/// The input looped to `len` samples per channel (stereo: a mono file is doubled).
fn looped(channels: &[Vec<f32>], len: usize) -> Vec<Vec<f32>> {
    let source: Vec<&Vec<f32>> = (0..2).map(|c| &channels[c.min(channels.len() - 1)]).collect();
    source
        .iter()
        .map(|ch| (0..len).map(|i| ch[i % ch.len()]).collect())
        .collect()
}

/// The share of output segment `[start, start + len)` of the first stem that is the dry fallback
/// `input[· − latency] / stems` (what the plugin plays while a segment is late), away from `ramp`
/// samples at each end: 0 for a separated segment, 1 for one played dry throughout, in between
/// for one that arrived late and faded in.
fn dry_share(
    render: &Render,
    input: &[Vec<f32>],
    start: usize,
    len: usize,
    ramp: usize,
    stems: usize,
) -> f64 {
    let out = &render.aux[0][0];
    let share = 1.0 / stems as f32;
    let scale = input[0].iter().fold(1e-9f32, |m, v| m.max(v.abs()));
    let interior = start + ramp..start + len - ramp;
    let dry = interior
        .clone()
        .filter(|&i| (out[i] - input[0][i - render.latency] * share).abs() <= 1e-6 * scale)
        .count();
    dry as f64 / interior.len() as f64
}

/// This process's peak resident set size (Linux `VmHWM`), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() {
    let options = options();
    let log = tempfile::NamedTempFile::new().expect("a temporary log file");
    // nice-plug's logger writes to the file NICE_LOG names (read when the plugin starts).
    std::env::set_var("NICE_LOG", log.path());
    let audio =
        read_all(&options.input).unwrap_or_else(|e| usage(&format!("{}: {e}", options.input.display())));
    let rate = audio.sample_rate;
    // The plugin's own framing: its frames, hop and latency at this rate.
    let step = Framing::new(rate, DEFAULT_PROCESSING_ALLOWANCE_SECONDS).step;
    let len = (options.seconds * f64::from(rate)).round() as usize;
    let input = looped(&audio.channels, len);
    println!(
        "realtime pacing: {:.0} s of {} at {rate} Hz, stereo, blocks of {}, realtime mode, paced to the wall clock",
        options.seconds,
        options.input.display(),
        options.block
    );
    let mut instance = instance();
    let started = std::time::Instant::now();
    let blocks = [options.block];
    let render = render(
        &mut instance,
        &input,
        RenderSpec {
            paced: true,
            ..RenderSpec::new(f64::from(rate), &blocks)
        },
    );
    let wall = started.elapsed().as_secs_f64();
    drop(instance);

    let ramp = (0.01 * f64::from(rate)).round() as usize + 1;
    let stems = SHIPPED.len();
    // A segment counts as played dry when more than 1 % of it is the dry fallback (a separated
    // stem matches the dry share to 1e-6 only by chance).
    let shares: Vec<f64> = (0..)
        .map(|k| render.latency + k * step)
        .take_while(|start| start + step <= len)
        .map(|start| dry_share(&render, &input, start, step, ramp, stems))
        .collect();
    let first_wet = shares.iter().position(|&d| d < 0.01).unwrap_or(shares.len());
    let behind: Vec<f64> = shares[first_wet..]
        .iter()
        .copied()
        .filter(|&d| d >= 0.01)
        .collect();
    let dry_seconds: f64 = behind
        .iter()
        .map(|d| d * step as f64 / f64::from(rate))
        .sum::<f64>()
        .max(0.0);
    println!(
        "reported latency: {} samples ({:.2} s); wall time {wall:.1} s for {:.1} s of audio",
        render.latency,
        render.latency as f64 / f64::from(rate),
        len as f64 / f64::from(rate)
    );
    println!(
        "segments of {:.2} s: {} complete, {} dry while the priors loaded, then {} separated and {} behind (played dry in part or whole: {dry_seconds:.1} s of dry audio)",
        step as f64 / f64::from(rate),
        shares.len(),
        first_wet,
        shares.len() - first_wet - behind.len(),
        behind.len()
    );
    if let Some(peak) = peak_rss_mib() {
        // The host's own buffers: the input and 18 output channels of the whole render.
        let host = (2 + render.main.len() + 2 * SLOTS) * len * 4;
        println!(
            "peak RSS of the process {peak:.0} MiB, of which the host's audio buffers {:.0} MiB: the plugin instance ≈ {:.0} MiB",
            host as f64 / 1048576.0,
            peak - host as f64 / 1048576.0
        );
    }
    let logged = std::fs::read_to_string(log.path()).unwrap_or_default();
    match logged
        .lines()
        .rev()
        .find(|l| l.contains("realtime activation ended"))
    {
        Some(line) => println!("plugin log: {}", line.split("Stemflow: ").last().unwrap_or(line)),
        None => println!("plugin log: no summary line (no frame was separated)"),
    }
}
