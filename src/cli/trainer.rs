//! The Python trainer behind `stemflow train-prior`: which interpreter and which
//! `stemflow_training` package, and running it with its log streamed, Ctrl-C turned into a clean
//! stop of the child.

use super::train_error::TrainError;
use crate::engine::priors::data_dir::non_empty_env;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::Duration;

/// Environment variable naming the Python interpreter that trains.
pub const PYTHON_ENV: &str = "STEMFLOW_PYTHON";
/// Environment variable naming the folder that holds the `stemflow_training` package.
pub const TRAINING_DIR_ENV: &str = "STEMFLOW_TRAINING_DIR";
/// The source tree this executable was built from (its `.venv` and `models/training`).
const SOURCE_TREE: &str = env!("CARGO_MANIFEST_DIR");

/// The interpreter in a venv, relative to the venv.
#[cfg(windows)]
const VENV_PYTHON: &str = ".venv/Scripts/python.exe";
/// The interpreter in a venv, relative to the venv.
#[cfg(not(windows))]
const VENV_PYTHON: &str = ".venv/bin/python";

/// A program name: a path if it has a separator, else looked up in `PATH`.
fn resolve_program(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return program.is_file().then(|| program.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// The Python interpreter: `--python`, else `$STEMFLOW_PYTHON` (either one, when given, is the only
/// thing tried), else the source tree's `.venv`, else `python3` in `PATH`.
pub fn locate_python(explicit: Option<&Path>) -> Result<PathBuf, TrainError> {
    let env = non_empty_env(PYTHON_ENV);
    let given = explicit
        .map(|p| (p.to_path_buf(), "--python"))
        .or_else(|| env.map(|p| (PathBuf::from(p), "$STEMFLOW_PYTHON")));
    if let Some((program, from)) = given {
        return resolve_program(&program).ok_or_else(|| TrainError::PythonNotFound {
            tried: format!("{} (from {from})", program.display()),
        });
    }
    let venv = Path::new(SOURCE_TREE).join(VENV_PYTHON);
    if venv.is_file() {
        return Ok(venv);
    }
    resolve_program(Path::new("python3")).ok_or_else(|| TrainError::PythonNotFound {
        tried: format!(
            "--python (not given), ${PYTHON_ENV} (unset), {} (absent), python3 in PATH (absent)",
            venv.display()
        ),
    })
}

/// The folder holding `stemflow_training/`: `$STEMFLOW_TRAINING_DIR`, else `models/training` of
/// the source tree this executable was built from.
pub fn locate_trainer() -> Result<PathBuf, TrainError> {
    let (dir, from) = match non_empty_env(TRAINING_DIR_ENV) {
        Some(dir) => (PathBuf::from(dir), format!("${TRAINING_DIR_ENV}")),
        None => (
            Path::new(SOURCE_TREE).join("models").join("training"),
            format!("the source tree stemflow was built from; set ${TRAINING_DIR_ENV} to another"),
        ),
    };
    let script = dir.join("stemflow_training").join("train.py");
    if script.is_file() {
        Ok(dir)
    } else {
        Err(TrainError::TrainerNotFound { script, from })
    }
}

/// A `python -m stemflow_training.<module>` command run from `trainer_dir`, unbuffered, one thread.
pub fn python_command(python: &Path, trainer_dir: &Path) -> Command {
    let mut command = Command::new(python);
    let mut path = OsString::from(trainer_dir.as_os_str());
    if let Some(old) = std::env::var_os("PYTHONPATH").filter(|v| !v.is_empty()) {
        path.push(if cfg!(windows) { ";" } else { ":" });
        path.push(old);
    }
    command
        .current_dir(trainer_dir)
        .env("PYTHONPATH", path)
        .env("PYTHONUNBUFFERED", "1")
        .env("OMP_NUM_THREADS", "1");
    command
}

/// Checks, before any training, that `python` can import the trainer and what it needs.
pub fn check_imports(python: &Path, trainer_dir: &Path) -> Result<(), TrainError> {
    let modules = "stemflow_training.train, stemflow_training.export, jax, onnx, soundfile, scipy.signal";
    let output = python_command(python, trainer_dir)
        .args(["-c", &format!("import {modules}")])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| TrainError::PythonNotFound {
            tried: format!("{} (cannot start it: {e})", python.display()),
        })?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(TrainError::TrainerImport {
        python: python.to_path_buf(),
        trainer_dir: trainer_dir.to_path_buf(),
        reason: last_line(&stderr).unwrap_or("no message").to_string(),
    })
}

/// The last non-empty line of `text`.
fn last_line(text: &str) -> Option<&str> {
    text.lines().map(str::trim).rfind(|l| !l.is_empty())
}

/// How a trainer run ended.
pub enum RunEnd {
    /// The child exited on its own.
    Exited {
        /// Its status.
        status: ExitStatus,
        /// The last line it wrote to stderr (its error, when it failed).
        last_error_line: Option<String>,
    },
    /// We were asked to stop (Ctrl-C, SIGTERM, SIGHUP): the child was terminated.
    Interrupted,
}

/// Copies `from` line by line to `to`, returning the last non-empty line.
fn forward<R: Read, W: Write>(from: R, mut to: W) -> Option<String> {
    let mut last = None;
    for line in BufReader::new(from).lines() {
        let Ok(line) = line else { break };
        let _ = writeln!(to, "{line}");
        if !line.trim().is_empty() {
            last = Some(line);
        }
    }
    last
}

/// Runs `command` (stdin closed), forwarding its stdout and stderr line by line; on a stop
/// request terminates it and waits for it.
pub fn run_streamed(mut command: Command) -> std::io::Result<RunEnd> {
    stop::install();
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    stop::own_process_group(&mut command);
    let mut child = command.spawn()?;
    let out = child
        .stdout
        .take()
        .map(|o| thread::spawn(move || forward(o, std::io::stdout())));
    let err = child
        .stderr
        .take()
        .map(|e| thread::spawn(move || forward(e, std::io::stderr())));
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if stop::requested() {
            stop::terminate(&mut child);
            child.wait()?;
            break None;
        }
        thread::sleep(Duration::from_millis(100));
    };
    let _ = out.map(|t| t.join());
    let last_error_line = err.and_then(|t| t.join().ok().flatten());
    Ok(match status {
        Some(status) if !stop::requested() => RunEnd::Exited {
            status,
            last_error_line,
        },
        _ => RunEnd::Interrupted,
    })
}

/// Stop requests (SIGINT, SIGTERM, SIGHUP) noted in a flag, so a long run can clean up after itself.
#[cfg(unix)]
mod stop {
    use std::os::unix::process::CommandExt;
    use std::process::{Child, Command};
    use std::sync::atomic::{AtomicBool, Ordering};

    static REQUESTED: AtomicBool = AtomicBool::new(false);

    extern "C" fn note(_signal: libc::c_int) {
        REQUESTED.store(true, Ordering::SeqCst);
    }

    /// Route the stop signals to the flag (from now on, for the life of the process).
    pub fn install() {
        let handler = note as extern "C" fn(libc::c_int) as libc::sighandler_t;
        for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
            unsafe {
                libc::signal(signal, handler);
            }
        }
    }

    /// Whether a stop signal arrived.
    pub fn requested() -> bool {
        REQUESTED.load(Ordering::SeqCst)
    }

    /// The child gets its own process group, so the terminal's Ctrl-C reaches only us and the child
    /// is stopped once, by [`terminate`] (a plain SIGTERM: no Python traceback).
    pub fn own_process_group(command: &mut Command) {
        command.process_group(0);
    }

    /// Ask the child to end.
    pub fn terminate(child: &mut Child) {
        if let Ok(pid) = libc::pid_t::try_from(child.id()) {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
    }
}

/// Elsewhere Ctrl-C ends the whole console group; the temporary folder may then remain.
#[cfg(not(unix))]
mod stop {
    use std::process::{Child, Command};

    pub fn install() {}
    pub fn requested() -> bool {
        false
    }
    pub fn own_process_group(_command: &mut Command) {}
    pub fn terminate(child: &mut Child) {
        let _ = child.kill();
    }
}

/// Whether a stop signal arrived (checked again after a successful run, before installing).
pub fn stop_requested() -> bool {
    stop::requested()
}
