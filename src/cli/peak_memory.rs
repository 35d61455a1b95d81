//! Peak memory of `separate` on a long file, for `bench`: the command runs as a child process
//! on a generated file, and its peak resident set size is read when it ends.

use super::CliError;
use crate::engine::files::audio_file::AudioBuffer;
use std::path::Path;
use std::process::Command;

/// Writes `minutes` of `audio` (looped) as a 16-bit WAV at `path`.
fn write_looped(path: &Path, audio: &AudioBuffer, minutes: f64) -> Result<(), CliError> {
    let spec = hound::WavSpec {
        channels: audio.channels.len() as u16,
        sample_rate: audio.sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let failed = |e: hound::Error| CliError::Usage(format!("cannot write {}: {e}", path.display()));
    let mut writer = hound::WavWriter::create(path, spec).map_err(failed)?;
    let frames = (minutes * 60.0 * f64::from(audio.sample_rate)) as usize;
    let len = audio.frames().max(1);
    for i in 0..frames {
        for channel in &audio.channels {
            let x = channel.get(i % len).copied().unwrap_or(0.0);
            writer
                .write_sample((x.clamp(-1.0, 1.0) * 32767.0) as i16)
                .map_err(failed)?;
        }
    }
    writer.finalize().map_err(failed)
}

/// Peak resident set size, in MiB, of the largest child process that has ended (Unix), else
/// `None`.
fn children_peak_mib() -> Option<f64> {
    #[cfg(unix)]
    {
        // SAFETY: getrusage only fills the struct it is given.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) } != 0 {
            return None;
        }
        // Linux reports KiB, macOS bytes.
        let kib = if cfg!(target_os = "macos") {
            usage.ru_maxrss as f64 / 1024.0
        } else {
            usage.ru_maxrss as f64
        };
        Some(kib / 1024.0)
    }
    #[cfg(not(unix))]
    None
}

/// Runs `stemflow separate` (this executable, one iteration per frame: memory does not depend
/// on the iteration count) on `minutes` of `audio` looped, with `extra` arguments, and returns
/// its peak RSS in MiB and its wall time in seconds.
pub fn separate_peak_mib(
    audio: &AudioBuffer,
    minutes: f64,
    extra: &[String],
) -> Result<(Option<f64>, f64), CliError> {
    let dir = tempfile::tempdir().map_err(|e| CliError::Usage(format!("no temporary folder: {e}")))?;
    let input = dir.path().join("long.wav");
    write_looped(&input, audio, minutes)?;
    let exe =
        std::env::current_exe().map_err(|e| CliError::Usage(format!("cannot find this executable: {e}")))?;
    let started = std::time::Instant::now();
    let status = Command::new(exe)
        .arg("separate")
        .arg(&input)
        .arg("-o")
        .arg(dir.path().join("stems"))
        .args(["--iterations", "1", "--quiet"])
        .args(extra)
        .status()
        .map_err(|e| CliError::Usage(format!("cannot run separate: {e}")))?;
    if !status.success() {
        return Err(CliError::Usage(format!(
            "separate on the {minutes}-minute file failed ({status})"
        )));
    }
    Ok((children_peak_mib(), started.elapsed().as_secs_f64()))
}
