//! The command line: a thin shell over [`crate::engine`].
//!
//! `separate` splits a file into stems, `priors` lists the installed priors, `bench` measures the
//! cost of separation, `train-prior` trains and installs a new stem's prior from recordings. Every
//! failure prints one line and exits non-zero.

mod bench;
mod error;
mod priors;
mod separate;
mod shared;
mod train_error;
mod train_prior;
mod trainer;

pub use error::CliError;
pub use train_error::TrainError;

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
    /// Separate a mix into one WAV file per stem.
    Separate(separate::SeparateArgs),
    /// List the installed priors and their manifests.
    Priors(priors::PriorsArgs),
    /// Measure ms per iteration and the real-time factor of a 5-s frame, default vs paper preset.
    Bench(bench::BenchArgs),
    /// Train a prior for a new stem from a folder of isolated recordings and install it.
    TrainPrior(train_prior::TrainPriorArgs),
}

/// Parse the arguments, run the command, and turn any error into one line and an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
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
            eprintln!("stemflow: error: {error}");
            ExitCode::FAILURE
        }
    }
}
