//! The Python trainer behind `stemflow train-prior`: which `stemflow_training` package and which
//! interpreter, and running it with its log streamed, a stop turned into the end of its whole
//! process group.
//!
//! A release build looks only where an installed Stemflow has things: beside its executable (the
//! bundle carries the trainer as `training/`) and in the data folder (`training/`, `venv/`). A
//! development build (debug assertions on: `cargo run`, `cargo test`) also looks, last, in the
//! source tree it was compiled from; no release build ever runs code from a path fixed when it
//! was built.

use super::train_error::TrainError;
use crate::engine::priors::data_dir::{data_dir, non_empty_env};
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
/// The trainer's folder beside the executable (in the bundle) and in the data folder.
pub const TRAINER_FOLDER: &str = "training";
/// The Python environment's folder in the data folder.
pub const VENV_FOLDER: &str = "venv";
/// The trainer's requirements, in its folder.
pub const REQUIREMENTS_FILE: &str = "requirements.txt";
/// How long a stopped trainer's process group has after SIGTERM before it is killed (SIGKILL).
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// The source tree a development build was compiled from (its `.venv` and `models/training`,
/// looked at last); none in a release build.
#[cfg(debug_assertions)]
const SOURCE_TREE: Option<&str> = Some(env!("CARGO_MANIFEST_DIR"));
/// A release build knows no source tree.
#[cfg(not(debug_assertions))]
const SOURCE_TREE: Option<&str> = None;

/// The interpreter inside a venv, relative to the venv.
#[cfg(windows)]
const VENV_PYTHON: &str = "Scripts/python.exe";
/// The interpreter inside a venv, relative to the venv.
#[cfg(not(windows))]
const VENV_PYTHON: &str = "bin/python";

/// Where the trainer and an interpreter are looked for when neither is named: separate from the
/// process so the order is testable.
#[derive(Debug, Clone, Default)]
pub struct Places {
    /// The running executable's folder (a bundle carries `training/` there).
    pub exe_dir: Option<PathBuf>,
    /// The data folder (`training/`, `venv/`), if one is known.
    pub data_dir: Option<PathBuf>,
    /// A development build's source tree; `None` in a release build.
    pub source_tree: Option<PathBuf>,
}

impl Places {
    /// The places of this process: its executable, its data folder and, in a development build,
    /// its source tree.
    pub fn of_this_process() -> Places {
        Places {
            exe_dir: std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(Path::to_path_buf)),
            data_dir: data_dir(),
            source_tree: SOURCE_TREE.map(PathBuf::from),
        }
    }

    /// Folders that may hold `stemflow_training/`, first wins.
    fn trainer_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        dirs.extend(self.exe_dir.iter().map(|d| d.join(TRAINER_FOLDER)));
        dirs.extend(self.data_dir.iter().map(|d| d.join(TRAINER_FOLDER)));
        dirs.extend(self.source_tree.iter().map(|d| d.join("models").join("training")));
        dirs
    }

    /// The venv `train-prior` uses when no interpreter is named: `<data dir>/venv`.
    pub fn venv(&self) -> Option<PathBuf> {
        self.data_dir.as_ref().map(|d| d.join(VENV_FOLDER))
    }

    /// Interpreters looked for when none is named, first wins.
    fn pythons(&self) -> Vec<PathBuf> {
        let mut pythons: Vec<PathBuf> = Vec::new();
        pythons.extend(self.venv().map(|v| v.join(VENV_PYTHON)));
        pythons.extend(self.source_tree.iter().map(|d| d.join(".venv").join(VENV_PYTHON)));
        pythons
    }
}

/// `path` quoted for a POSIX shell, so a printed command can be pasted as it is.
fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.to_string_lossy().replace('\'', "'\\''"))
}

/// The exact commands that make the venv `train-prior` looks for, with the trainer's requirements.
pub fn make_venv_command(venv: &Path, trainer_dir: &Path) -> String {
    format!(
        "python3 -m venv {} && {} -m pip install -r {}",
        shell_quote(venv),
        shell_quote(&venv.join(VENV_PYTHON)),
        shell_quote(&trainer_dir.join(REQUIREMENTS_FILE))
    )
}

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
/// thing tried), else `<data dir>/venv`, else (development build) the source tree's `.venv`. None
/// found: the error gives the exact commands that make the venv for `trainer_dir`.
pub fn locate_python(
    explicit: Option<&Path>,
    places: &Places,
    trainer_dir: &Path,
) -> Result<PathBuf, TrainError> {
    let env = non_empty_env(PYTHON_ENV);
    let given = explicit
        .map(|p| (p.to_path_buf(), "--python"))
        .or_else(|| env.map(|p| (PathBuf::from(p), "$STEMFLOW_PYTHON")));
    if let Some((program, from)) = given {
        return resolve_program(&program).ok_or_else(|| TrainError::PythonNotFound {
            tried: vec![format!("{} (from {from})", program.display())],
            how: "pass --python with the path of an interpreter that has the trainer's requirements".into(),
        });
    }
    let candidates = places.pythons();
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    let how = match places.venv() {
        Some(venv) => format!(
            "make one with `{}`, or pass --python",
            make_venv_command(&venv, trainer_dir)
        ),
        None => "set STEMFLOW_DATA_DIR or HOME (the venv goes in the data folder), or pass --python".into(),
    };
    let mut tried = vec![
        "--python (not given)".to_string(),
        format!("${PYTHON_ENV} (unset)"),
    ];
    tried.extend(candidates.iter().map(|p| format!("{} (absent)", p.display())));
    Err(TrainError::PythonNotFound { tried, how })
}

/// The folder holding `stemflow_training/`: `$STEMFLOW_TRAINING_DIR` (when set, the only thing
/// tried), else `training/` beside the executable (the bundle), else `<data dir>/training`, else
/// (development build) the source tree's `models/training`.
pub fn locate_trainer(places: &Places) -> Result<PathBuf, TrainError> {
    let script = |dir: &Path| dir.join("stemflow_training").join("train.py");
    if let Some(dir) = non_empty_env(TRAINING_DIR_ENV).map(PathBuf::from) {
        return if script(&dir).is_file() {
            Ok(dir)
        } else {
            Err(TrainError::TrainerNotFound {
                tried: vec![format!("{} (from ${TRAINING_DIR_ENV})", dir.display())],
            })
        };
    }
    let dirs = places.trainer_dirs();
    match dirs.iter().find(|dir| script(dir).is_file()) {
        Some(dir) => Ok(dir.clone()),
        None => Err(TrainError::TrainerNotFound {
            tried: dirs.iter().map(|d| d.display().to_string()).collect(),
        }),
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
            tried: vec![format!("{} (cannot start it: {e})", python.display())],
            how: "pass --python with the path of an interpreter that has the trainer's requirements".into(),
        })?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(TrainError::TrainerImport {
        python: python.to_path_buf(),
        trainer_dir: trainer_dir.to_path_buf(),
        reason: last_line(&stderr).unwrap_or("no message").to_string(),
        install: format!(
            "{} -m pip install -r {}",
            shell_quote(python),
            shell_quote(&trainer_dir.join(REQUIREMENTS_FILE))
        ),
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

/// Copies `from` line by line to `to`, returning the last non-empty line. Lines are read as bytes
/// and written lossily (a byte that is not UTF-8 becomes U+FFFD), so no line stops the copy; a
/// failed write is ignored and reading goes on, so the child never writes into a closed pipe.
fn forward<R: Read, W: Write>(from: R, mut to: W) -> Option<String> {
    let mut reader = BufReader::new(from);
    let mut last = None;
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\n', '\r']);
        let _ = writeln!(to, "{text}");
        if !text.trim().is_empty() {
            last = Some(text.to_string());
        }
    }
    last
}

/// Runs `command` (stdin closed) in its own process group, forwarding its stdout and stderr line
/// by line. On a stop request the group gets SIGTERM and, if anything in it is still running after
/// [`STOP_GRACE`] (or at a second request), SIGKILL. When the child ends, whatever it left running
/// in its group is killed, so nothing outlives the command and the log's pipes close.
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
    let stopped = loop {
        if stop::exited(&mut child)? {
            break false;
        }
        if stop::requested() {
            stop::end_group(&mut child, STOP_GRACE)?;
            break true;
        }
        thread::sleep(Duration::from_millis(100));
    };
    stop::kill_group(&child);
    let status = child.wait()?;
    let _ = out.map(|t| t.join());
    let last_error_line = err.and_then(|t| t.join().ok().flatten());
    Ok(if stopped || stop::requested() {
        RunEnd::Interrupted
    } else {
        RunEnd::Exited {
            status,
            last_error_line,
        }
    })
}

/// Stop requests (SIGINT, SIGTERM, SIGHUP) noted in a counter, so a long run can clean up after
/// itself, and the trainer's process group ended.
#[cfg(unix)]
mod stop {
    use std::os::unix::process::CommandExt;
    use std::process::{Child, Command};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    /// Stop signals received.
    static REQUESTS: AtomicUsize = AtomicUsize::new(0);

    extern "C" fn note(_signal: libc::c_int) {
        REQUESTS.fetch_add(1, Ordering::SeqCst);
    }

    /// Route the stop signals to the counter (from now on, for the life of the process).
    pub fn install() {
        let handler = note as extern "C" fn(libc::c_int) as libc::sighandler_t;
        for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            // SAFETY: the handler only adds to an atomic, which is async-signal-safe.
            unsafe {
                libc::signal(signal, handler);
            }
        }
    }

    /// Whether a stop signal arrived.
    pub fn requested() -> bool {
        REQUESTS.load(Ordering::SeqCst) > 0
    }

    /// The child leads a process group of its own (its id is the group's), so the terminal's Ctrl-C
    /// reaches only us and the child and everything it starts are stopped together, by
    /// [`end_group`].
    pub fn own_process_group(command: &mut Command) {
        command.process_group(0);
    }

    /// Sends `signal` to the child's process group.
    fn signal_group(child: &Child, signal: libc::c_int) {
        if let Ok(pgid) = libc::pid_t::try_from(child.id()) {
            // SAFETY: kill has no memory-safety preconditions. The group id is the child's pid,
            // which cannot be reused while the child is not reaped (see `exited`).
            unsafe {
                libc::kill(-pgid, signal);
            }
        }
    }

    /// Whether the child has ended, leaving it unreaped (a zombie keeps its pid, and so the group
    /// id, from being reused until [`kill_group`] has run).
    #[cfg(target_os = "linux")]
    pub fn exited(child: &mut Child) -> std::io::Result<bool> {
        // SAFETY: an all-zero siginfo_t is valid; waitid only writes into it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid siginfo_t to write; WNOWAIT leaves the child to `wait`.
        let result = unsafe {
            libc::waitid(
                libc::P_PID,
                child.id() as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        if result == -1 {
            let error = std::io::Error::last_os_error();
            return if error.kind() == std::io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(error)
            };
        }
        // SAFETY: waitid filled `info` for a child that changed state; si_pid is 0 otherwise.
        Ok(unsafe { info.si_pid() } != 0)
    }

    /// Whether the child has ended (reaped here: elsewhere the group is signalled after).
    #[cfg(not(target_os = "linux"))]
    pub fn exited(child: &mut Child) -> std::io::Result<bool> {
        Ok(child.try_wait()?.is_some())
    }

    /// SIGTERM to the child's group; SIGKILL once the child has not ended within `grace`, or at
    /// a second stop request.
    pub fn end_group(child: &mut Child, grace: Duration) -> std::io::Result<()> {
        let seen = REQUESTS.load(Ordering::SeqCst);
        signal_group(child, libc::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < grace && REQUESTS.load(Ordering::SeqCst) == seen {
            if exited(child)? {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        signal_group(child, libc::SIGKILL);
        Ok(())
    }

    /// SIGKILL to whatever is left in the child's group.
    pub fn kill_group(child: &Child) {
        signal_group(child, libc::SIGKILL);
    }
}

/// Elsewhere Ctrl-C ends the whole console group; the temporary folder may then remain.
#[cfg(not(unix))]
mod stop {
    use std::process::{Child, Command};
    use std::time::Duration;

    pub fn install() {}
    pub fn requested() -> bool {
        false
    }
    pub fn own_process_group(_command: &mut Command) {}
    pub fn exited(child: &mut Child) -> std::io::Result<bool> {
        Ok(child.try_wait()?.is_some())
    }
    pub fn end_group(child: &mut Child, _grace: Duration) -> std::io::Result<()> {
        let _ = child.kill();
        Ok(())
    }
    pub fn kill_group(_child: &Child) {}
}

/// Whether a stop signal arrived (checked again after a successful run, before installing).
pub fn stop_requested() -> bool {
    stop::requested()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line that is not UTF-8 is written with U+FFFD and the lines after it still come.
    #[test]
    fn a_line_that_is_not_utf8_does_not_stop_forwarding() {
        let input: &[u8] = b"first\n\xff\xfe bad\r\nlast line\n\n";
        let mut out = Vec::new();
        let last = forward(input, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "first\n\u{FFFD}\u{FFFD} bad\nlast line\n\n"
        );
        assert_eq!(last.as_deref(), Some("last line"));
    }

    /// A release build (no source tree) looks beside the executable, then in the data folder,
    /// and with no interpreter there says exactly how to make one, with the real paths.
    #[test]
    fn a_release_build_looks_only_where_an_installed_stemflow_has_things() {
        let tmp = tempfile::tempdir().unwrap();
        let places = Places {
            exe_dir: Some(tmp.path().join("bundle")),
            data_dir: Some(tmp.path().join("data")),
            source_tree: None,
        };
        assert_eq!(
            places.trainer_dirs(),
            vec![
                tmp.path().join("bundle/training"),
                tmp.path().join("data/training")
            ]
        );
        assert_eq!(
            places.pythons(),
            vec![tmp.path().join("data/venv").join(VENV_PYTHON)]
        );
        if non_empty_env(PYTHON_ENV).is_some() {
            return;
        }
        let trainer = tmp.path().join("bundle/training");
        let error = locate_python(None, &places, &trainer).unwrap_err().to_string();
        let expected = format!(
            "python3 -m venv '{0}/data/venv' && '{0}/data/venv/{VENV_PYTHON}' -m pip install -r '{0}/bundle/training/requirements.txt'",
            tmp.path().display()
        );
        assert!(error.contains(&expected), "{error}");
    }

    /// A development build also looks in its source tree, last.
    #[test]
    fn a_development_build_looks_in_its_source_tree_last() {
        let places = Places {
            exe_dir: Some(PathBuf::from("/exe")),
            data_dir: Some(PathBuf::from("/data")),
            source_tree: Some(PathBuf::from("/src")),
        };
        assert_eq!(
            places.trainer_dirs(),
            ["/exe/training", "/data/training", "/src/models/training"].map(PathBuf::from)
        );
        assert_eq!(
            places.pythons(),
            [
                Path::new("/data/venv").join(VENV_PYTHON),
                Path::new("/src/.venv").join(VENV_PYTHON)
            ]
        );
        assert_eq!(SOURCE_TREE.is_some(), cfg!(debug_assertions));
    }

    #[test]
    fn quoted_paths_survive_a_shell() {
        assert_eq!(shell_quote(Path::new("/a b/it's")), "'/a b/it'\\''s'");
    }
}
