//! `stemflow separate` run as a child process on a generated file, for `bench`'s whole-run
//! figures (start-up, a clip from process start to its stems, peak memory): what a user waits
//! for is the whole process, not one frame inside it.

use super::CliError;
use crate::engine::files::audio_file::AudioBuffer;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// Writes `seconds` of `audio` (looped; silence with `silent`) as a 16-bit WAV at `path`.
pub fn write_clip(path: &Path, audio: &AudioBuffer, seconds: f64, silent: bool) -> Result<(), CliError> {
    let spec = hound::WavSpec {
        channels: audio.channels.len() as u16,
        sample_rate: audio.sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let failed = |e: hound::Error| CliError::Usage(format!("cannot write {}: {e}", path.display()));
    let mut writer = hound::WavWriter::create(path, spec).map_err(failed)?;
    let frames = (seconds * f64::from(audio.sample_rate)) as usize;
    let len = audio.frames().max(1);
    for i in 0..frames {
        for channel in &audio.channels {
            let x = if silent {
                0.0
            } else {
                channel.get(i % len).copied().unwrap_or(0.0)
            };
            writer
                .write_sample((x.clamp(-1.0, 1.0) * 32767.0) as i16)
                .map_err(failed)?;
        }
    }
    writer.finalize().map_err(failed)
}

/// Runs this executable's `separate` on `input` into `output` (replacing what is there), quietly,
/// with `args`; returns its wall time in seconds, from spawning the process to its exit.
pub fn run_separate(input: &Path, output: &Path, args: &[String]) -> Result<f64, CliError> {
    let exe =
        std::env::current_exe().map_err(|e| CliError::Usage(format!("cannot find this executable: {e}")))?;
    let started = Instant::now();
    let status = Command::new(exe)
        .arg("separate")
        .arg(input)
        .arg("-o")
        .arg(output)
        .args(["--quiet", "--force"])
        .args(args)
        .status()
        .map_err(|e| CliError::Usage(format!("cannot run separate: {e}")))?;
    let seconds = started.elapsed().as_secs_f64();
    if !status.success() {
        return Err(CliError::Usage(format!(
            "separate on {} failed ({status})",
            input.display()
        )));
    }
    Ok(seconds)
}
