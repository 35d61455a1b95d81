//! Peak memory of `separate` on a long file, for `bench`: the command runs as a child process
//! on a generated file, and its peak resident set size is read when it ends.

use super::child_separate::{run_separate, write_clip};
use super::CliError;
use crate::engine::files::audio_file::AudioBuffer;

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
    write_clip(&input, audio, minutes * 60.0, false)?;
    let mut args = vec!["--iterations".to_string(), "1".to_string()];
    args.extend_from_slice(extra);
    let seconds = run_separate(&input, &dir.path().join("stems"), &args)?;
    Ok((children_peak_mib(), seconds))
}
