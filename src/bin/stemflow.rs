//! The `stemflow` command line.

fn main() -> std::process::ExitCode {
    stemflow::cli::main()
}
