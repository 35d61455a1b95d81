//! Options every command shares, and the steps they share: logging, runtime, priors.

use super::CliError;
use crate::engine::priors::catalog::{default_search_dirs, PriorCatalog};
use crate::engine::priors::prior::Prior;
use crate::engine::priors::runtime::{Device, Runtime, RuntimeOptions, SessionOptions};
use crate::engine::search::settings::SeparationSettings;
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;

/// Global options: where the runtime and the priors are, and how to run the graphs.
#[derive(Debug, Args)]
pub struct SharedArgs {
    /// The ONNX Runtime library to load (else $STEMFLOW_ORT_LIB, beside the executable, the set-up location; for --device cuda their gpu/ first).
    #[arg(long, global = true, value_name = "PATH")]
    pub ort_lib: Option<PathBuf>,
    /// A folder of priors searched first (else $STEMFLOW_PRIORS, user-trained, beside the executable, shipped).
    #[arg(long, global = true, value_name = "DIR")]
    pub priors: Option<PathBuf>,
    /// Execution provider: cpu, cuda (the GPU build of `cargo xtask setup --gpu`) or directml; falls back to cpu, saying why.
    #[arg(long, global = true, default_value = "cpu")]
    pub device: Device,
    /// Threads per ONNX Runtime session.
    #[arg(long, global = true, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: u16,
    /// Threads the search runs the stems' graphs on, side by side (default: one per core; the
    /// stems do not depend on it).
    #[arg(long, global = true, value_name = "N")]
    pub stem_threads: Option<u16>,
    /// More log output (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// Warnings by default; `-v` for info, `-vv` for debug (decoder chatter included); `RUST_LOG`
/// overrides. The decoder's own log lines repeat what our one error line says, so they stay quiet
/// below `-vv`.
pub fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn,symphonia=off,symphonia_core=off,symphonia_bundle_mp3=off,symphonia_format_riff=off",
        1 => "info,symphonia=off,symphonia_core=off,symphonia_bundle_mp3=off,symphonia_format_riff=off",
        _ => "debug",
    };
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format_target(false)
        .try_init();
}

/// The directory of the running executable, where a packaged runtime and priors may sit.
fn beside_executable() -> Vec<PathBuf> {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(PathBuf::from))
        .into_iter()
        .collect()
}

impl SharedArgs {
    /// Every folder searched for priors, in order.
    pub fn search_dirs(&self) -> Vec<PathBuf> {
        default_search_dirs(self.priors.as_deref(), &beside_executable())
    }

    /// The priors found in [`Self::search_dirs`].
    pub fn catalog(&self) -> PriorCatalog {
        PriorCatalog::discover(&self.search_dirs())
    }

    /// Load the ONNX Runtime library by the documented lookup order.
    pub fn runtime(&self) -> Result<Arc<Runtime>, CliError> {
        let options = RuntimeOptions {
            library: self.ort_lib.clone(),
            beside: beside_executable(),
            only_beside: false,
            gpu_build: self.device == Device::Cuda,
        };
        Ok(Runtime::load(&options)?)
    }

    /// `settings` with the thread options applied.
    pub fn with_threads(&self, mut settings: SeparationSettings) -> SeparationSettings {
        if let Some(threads) = self.stem_threads {
            settings.stem_threads = usize::from(threads);
        }
        settings
    }

    /// How sessions are made.
    pub fn session_options(&self) -> SessionOptions {
        SessionOptions {
            device: self.device,
            threads: usize::from(self.threads),
        }
    }

    /// Load the named priors (all installed ones when `stems` is empty), sorted as asked.
    pub fn load_priors(&self, runtime: &Runtime, stems: &[String]) -> Result<Vec<Prior>, CliError> {
        let catalog = self.catalog();
        let names: Vec<String> = if stems.is_empty() {
            catalog.stems()
        } else {
            stems.to_vec()
        };
        if names.is_empty() {
            return Err(CliError::Usage(format!(
                "no priors installed (searched {}); pass --priors DIR or set STEMFLOW_PRIORS",
                self.search_dirs()
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let dirs = catalog.select(&names)?;
        let options = self.session_options();
        let threads = self
            .with_threads(SeparationSettings::default_preset())
            .stem_threads;
        Ok(Prior::load_all(runtime, &dirs, &options, threads)?)
    }
}

/// For commands that only print (`priors`, `bench`): a closed stdout (`stemflow priors | head`)
/// ends the process quietly, as for any Unix tool, instead of panicking inside `println!`.
/// Commands that write files keep Rust's default, so their clean-up code always runs.
pub fn exit_quietly_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
