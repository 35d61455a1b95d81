//! `cargo xtask gpu-check [--debug]`: on a machine with an NVIDIA GPU, checks that CUDA gives the
//! CPU's stems, faster. It installs the CPU and GPU runtimes (`setup --gpu`), builds the command
//! line (release; `--debug` for the test build's profile), separates the demo mix on CUDA and on
//! the CPU, checks each CUDA stem is within [`MAX_ERROR_DB`] of the CPU's (error energy relative
//! to the CPU stem's), runs `stemflow bench` on both devices and prints the speed-ups. Where
//! CUDA falls back to the CPU (no GPU, no driver) it stops after the first separation, printing
//! the engine's reason, and fails.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

/// How far a CUDA stem may be from the CPU's: error energy over signal energy, in dB.
pub const MAX_ERROR_DB: f64 = -60.0;

/// What the engine writes when a GPU request falls back (`runtime::report_fallback`).
const FALLBACK_MARK: &str = "cuda is not available:";

/// The two devices compared.
const DEVICES: [&str; 2] = ["cuda", "cpu"];

/// Runs the check; `args` may hold `--debug`.
pub fn gpu_check(root: &Path, args: &[String]) -> Result<(), String> {
    let debug = match args {
        [] => false,
        [flag] if flag == "--debug" => true,
        _ => {
            return Err(format!(
                "expected `gpu-check [--debug]`, found `gpu-check {}`",
                args.join(" ")
            ))
        }
    };
    crate::setup_runtime(false)?;
    crate::setup_runtime(true)?;
    let stemflow = build_cli(root, debug)?;
    let mix = root.join("models/demo/mix.wav");
    let work = std::env::temp_dir().join(format!("stemflow-gpu-check-{}", std::process::id()));
    let result = compare_devices(&stemflow, &mix, &work);
    let _ = fs::remove_dir_all(&work);
    result
}

/// Builds `stemflow` and returns its path.
fn build_cli(root: &Path, debug: bool) -> Result<PathBuf, String> {
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo.current_dir(root).args(["build", "--bin", "stemflow"]);
    if !debug {
        cargo.arg("--release");
    }
    crate::run(&mut cargo)?;
    let target = crate::bundle::bundled_dir(root)?
        .parent()
        .map(Path::to_path_buf)
        .ok_or("the target folder has no parent")?;
    Ok(target
        .join(if debug { "debug" } else { "release" })
        .join("stemflow"))
}

/// Separates `mix` on each device, compares the stems, then benches both devices.
fn compare_devices(stemflow: &Path, mix: &Path, work: &Path) -> Result<(), String> {
    let mut seconds = BTreeMap::new();
    for device in DEVICES {
        let out = work.join(device);
        let started = Instant::now();
        let output = run_cli(
            Command::new(stemflow)
                .args(["separate", "--device", device, "-o"])
                .arg(&out)
                .arg(mix),
        )?;
        seconds.insert(device, started.elapsed().as_secs_f64());
        if device == "cuda" {
            if let Some(reason) = fallback_reason(&output) {
                return Err(format!(
                    "NO GPU: CUDA fell back to the CPU on this machine, so nothing was compared ({reason})"
                ));
            }
            println!("gpu-check: separated {} on CUDA", mix.display());
        }
        echo_stderr(&output);
    }
    let worst = compare_stems(&work.join("cpu"), &work.join("cuda"))?;
    println!("gpu-check: every CUDA stem within {worst:.1} dB of the CPU's (limit {MAX_ERROR_DB} dB)");
    println!(
        "gpu-check: separate took {:.1} s on CUDA, {:.1} s on the CPU: {:.2}× faster",
        seconds["cuda"],
        seconds["cpu"],
        seconds["cpu"] / seconds["cuda"]
    );
    let mut frame_seconds = BTreeMap::new();
    for device in DEVICES {
        let output =
            run_cli(Command::new(stemflow).args(["bench", "--device", device, "--memory-minutes", "0"]))?;
        echo_stderr(&output);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        print!("{stdout}");
        frame_seconds.insert(device, bench_frame_seconds(&stdout));
    }
    for (run, cpu) in &frame_seconds["cpu"] {
        if let Some(cuda) = frame_seconds["cuda"].get(run) {
            println!(
                "gpu-check: bench {run}: {cpu:.3} s per frame on the CPU, {cuda:.3} s on CUDA: {:.2}× faster",
                cpu / cuda
            );
        }
    }
    Ok(())
}

/// Runs the command line; fails on a non-zero exit, with what it wrote to stderr.
fn run_cli(command: &mut Command) -> Result<Output, String> {
    let output = command
        .output()
        .map_err(|e| format!("cannot start {command:?}: {e}"))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(format!(
            "{command:?} failed with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Passes a run's stderr on.
fn echo_stderr(output: &Output) {
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
}

/// The engine's reason in a run's stderr (from its fallback line on), if CUDA fell back.
fn fallback_reason(output: &Output) -> Option<String> {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr.lines().find(|line| line.contains(FALLBACK_MARK))?;
    line.find(FALLBACK_MARK).map(|at| line[at..].to_string())
}

/// Seconds per frame of each run in `stemflow bench`'s table (`run steps ms/step frame-s rtf`).
fn bench_frame_seconds(stdout: &str) -> BTreeMap<String, f64> {
    stdout
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                [run, _steps, _ms, frame, _rtf] => Some((run.to_string(), frame.parse().ok()?)),
                _ => None,
            }
        })
        .collect()
}

/// Every WAV file below `dir`, by its path relative to `dir`.
fn wav_files(dir: &Path, under: &Path, found: &mut BTreeMap<PathBuf, PathBuf>) -> Result<(), String> {
    for entry in fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.is_dir() {
            wav_files(&path, under, found)?;
        } else if path.extension().is_some_and(|x| x == "wav") {
            let relative = path.strip_prefix(under).unwrap_or(&path).to_path_buf();
            found.insert(relative, path);
        }
    }
    Ok(())
}

/// The samples of a 32-bit float WAV (the command line's default stem format).
fn read_samples(path: &Path) -> Result<Vec<f32>, String> {
    let reader = hound::WavReader::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    reader
        .into_samples::<f32>()
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Error energy of `found` against `reference`, relative to the reference's energy, in dB
/// (−∞ when equal; 0 dB for a silent reference that is not matched).
pub fn relative_error_db(reference: &[f32], found: &[f32]) -> f64 {
    let signal: f64 = reference.iter().map(|&x| f64::from(x).powi(2)).sum();
    let error: f64 = reference
        .iter()
        .zip(found)
        .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
        .sum();
    if error == 0.0 {
        f64::NEG_INFINITY
    } else {
        10.0 * (error / signal.max(f64::MIN_POSITIVE)).log10()
    }
}

/// Compares each CPU stem with the CUDA stem of the same name; returns the worst error in dB.
fn compare_stems(cpu: &Path, cuda: &Path) -> Result<f64, String> {
    let (mut cpu_files, mut cuda_files) = (BTreeMap::new(), BTreeMap::new());
    wav_files(cpu, cpu, &mut cpu_files)?;
    wav_files(cuda, cuda, &mut cuda_files)?;
    let names = |files: &BTreeMap<PathBuf, PathBuf>| files.keys().cloned().collect::<Vec<_>>();
    if cpu_files.is_empty() || names(&cpu_files) != names(&cuda_files) {
        return Err(format!(
            "expected the same stems from both devices, found {:?} on the CPU and {:?} on CUDA",
            names(&cpu_files),
            names(&cuda_files)
        ));
    }
    let mut worst = f64::NEG_INFINITY;
    for (name, cpu_path) in &cpu_files {
        let (reference, found) = (read_samples(cpu_path)?, read_samples(&cuda_files[name])?);
        if reference.len() != found.len() {
            return Err(format!(
                "{}: expected {} samples as on the CPU, found {} on CUDA",
                name.display(),
                reference.len(),
                found.len()
            ));
        }
        let db = relative_error_db(&reference, &found);
        println!("gpu-check: {}: CUDA − CPU error {db:.1} dB", name.display());
        if db > MAX_ERROR_DB {
            return Err(format!(
                "{}: expected the CUDA stem within {MAX_ERROR_DB} dB of the CPU's, found {db:.1} dB",
                name.display()
            ));
        }
        worst = worst.max(db);
    }
    Ok(worst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_is_relative_to_the_reference_energy() {
        let reference = [1.0f32, -1.0, 1.0, -1.0];
        assert_eq!(relative_error_db(&reference, &reference), f64::NEG_INFINITY);
        let off = [1.001f32, -1.0, 1.0, -1.0];
        let db = relative_error_db(&reference, &off);
        // 1e-6 / 4 → −66 dB.
        assert!((db - (-66.02)).abs() < 0.05, "{db}");
        assert!(db < MAX_ERROR_DB);
    }

    #[test]
    fn the_bench_table_is_read_by_run_name() {
        let stdout = "bench: 4 stems (…), device cuda\n\
                      run           steps       ms/step   frame s  real-time factor\n\
                      default          10        120.00     1.200             0.240\n\
                      flows            10        100.00     1.000             0.200\n\
                      ratio default/flows (the NMF expert's cost): 1.200\n";
        let seconds = bench_frame_seconds(stdout);
        assert_eq!(seconds.len(), 2);
        assert_eq!(seconds["default"], 1.2);
        assert_eq!(seconds["flows"], 1.0);
    }
}
