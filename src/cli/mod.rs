//! The command line: a thin shell over [`crate::engine`].
//!
//! `separate` splits a file into stems, `priors` lists the installed priors, `bench` measures the
//! cost of separation, `train-prior` trains and installs a new stem's prior from recordings. Every
//! failure prints one line and exits non-zero.

mod batch;
mod batch_report;
mod bench;
mod child_separate;
mod error;
mod interrupt;
mod json_file;
mod message;
mod peak_memory;
mod priors;
mod progress;
mod separate;
mod shard;
mod shared;
mod stored_level_gains;
mod track_lock;
mod track_panic;
mod track_record;
mod train_error;
mod train_prior;
mod trainer;
mod walk;

pub use error::CliError;
pub use train_error::TrainError;

use crate::engine::files::separate_file::SeparateFileError;
use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Source-only music source separation with Glow priors.
#[derive(Debug, Parser)]
#[command(name = "stemflow", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    shared: shared::SharedArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Separate mixes into one file per stem (WAV or FLAC), one folder per track.
    Separate(separate::SeparateArgs),
    /// List the installed priors and their manifests.
    Priors(priors::PriorsArgs),
    /// Measure ms per step and the real-time factor of a 5-s frame: the default, paper and nmf presets, the flows alone, and SGLD.
    Bench(bench::BenchArgs),
    /// Train a prior for a new stem from a folder of isolated recordings and install it.
    TrainPrior(train_prior::TrainPriorArgs),
}

/// Help and version as clap prints them; any other argument error as one `stemflow: error:`
/// line (like every other failure), exit status 2.
fn usage_failure(error: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = error.print();
        return ExitCode::from(if error.use_stderr() { 2 } else { 0 });
    }
    message::error(format!(
        "{} (see --help)",
        first_message(&error.render().to_string())
    ));
    ExitCode::from(2)
}

/// The first message of clap's rendered error, on one line: a line ending in `:` takes the
/// indented lines under it (the arguments it names, such as `<INPUT>...`).
fn first_message(rendered: &str) -> String {
    let mut lines = rendered.lines().skip_while(|line| line.trim().is_empty());
    let Some(first) = lines.next() else {
        return "invalid arguments".into();
    };
    let first = first.trim_start_matches("error: ").trim_end();
    if !first.ends_with(':') {
        return first.to_string();
    }
    let named: Vec<&str> = lines
        .take_while(|line| line.starts_with(' ') && !line.trim().is_empty())
        .map(str::trim)
        .collect();
    format!("{first} {}", named.join(", "))
}

/// Parse the arguments, run the command, and turn any error into one line and an exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_failure(error),
    };
    shared::init_logging(cli.shared.verbose);
    let result = match cli.command {
        Command::Separate(args) => separate::run(&cli.shared, args),
        Command::Priors(args) => {
            shared::exit_quietly_on_closed_pipe();
            priors::run(&cli.shared, args)
        }
        Command::Bench(args) => {
            shared::exit_quietly_on_closed_pipe();
            bench::run(&cli.shared, args)
        }
        Command::TrainPrior(args) => train_prior::run(&cli.shared, args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            message::error(&error);
            if matches!(
                error,
                CliError::Separate(SeparateFileError::Stopped)
                    | CliError::StoppedInBatch { .. }
                    | CliError::Train(TrainError::Interrupted { .. })
            ) {
                // The shell's convention for a command ended by Ctrl-C.
                return ExitCode::from(130);
            }
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_argument_is_named() {
        let error = Cli::try_parse_from(["stemflow", "separate"]).unwrap_err();
        let message = first_message(&error.render().to_string());
        assert!(message.contains("<INPUT>"), "{message}");
        let error = Cli::try_parse_from(["stemflow", "separate", "--bogus"]).unwrap_err();
        assert!(first_message(&error.render().to_string()).contains("--bogus"));
    }
}
