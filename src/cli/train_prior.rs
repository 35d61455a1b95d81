//! `stemflow train-prior`: a new stem's prior from a folder of isolated recordings ("bring your
//! own stem"). Everything that can be checked is checked before Python starts; the Python trainer
//! (`models/training`) then trains and exports into a temporary folder beside the destination; the
//! export is loaded and run once by the engine, and only then renamed into place. Checkpoints go to
//! `<data dir>/checkpoints/<stem>/`, so the same command run again resumes.

use super::message;
use super::priors::describe;
use super::shared::SharedArgs;
use super::stored_level_gains::store_level_gains;
use super::train_error::TrainError;
use super::trainer::{self, RunEnd};
use super::walk::find_files;
use super::CliError;
use crate::engine::constants::{BINS, FRAMES};
use crate::engine::priors::catalog::user_priors_dir;
use crate::engine::priors::data_dir::data_dir;
use crate::engine::priors::manifest::Manifest;
use crate::engine::priors::prior::Prior;
use crate::engine::priors::runtime::Runtime;
use crate::engine::stem_name::is_valid_stem_name;
use clap::Args;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

/// File endings the trainer reads (`stemflow_training/data.py`, `AUDIO_EXT`): not those of
/// `separate`, which decodes MP3 and M4A too.
const TRAINER_EXTENSIONS: &[&str] = &["wav", "flac", "ogg", "aif", "aiff"];
/// In a checkpoint folder: the recordings found, one path a line, which the trainer reads instead
/// of searching the folder itself (one search, the command line's, decides what it trains on).
const RECORDINGS_LIST: &str = "recordings-files.txt";
/// Seconds of audio the trainer may take, for training and for validation: all of it.
const ALL_AUDIO_SECONDS: &str = "100000";
/// In a checkpoint folder: the recordings folder those checkpoints were trained on.
const RECORDINGS_RECORD: &str = "recordings.txt";

/// Arguments of `train-prior`.
#[derive(Debug, Args)]
pub struct TrainPriorArgs {
    /// Name of the new stem: lowercase letters, digits, `-` and `_`, e.g. `strings`.
    #[arg(long)]
    pub stem: String,
    /// Folder of isolated recordings of that instrument, searched recursively (WAV, FLAC, OGG,
    /// AIFF; any rate, mono or stereo). Every 10th file is held out for validation.
    #[arg(value_name = "DIR_OF_RECORDINGS")]
    pub recordings: PathBuf,
    /// Wall-clock limit in minutes; the prior is exported when it is reached (running the same
    /// command again resumes from the checkpoint).
    #[arg(long, default_value_t = 60.0)]
    pub minutes: f64,
    /// Optimizer steps in all (including those of resumed runs).
    #[arg(long, default_value_t = 8000, value_parser = clap::value_parser!(u32).range(1..))]
    pub steps: u32,
    /// Folder to install into; the prior becomes DIR/<stem> [default: <data dir>/priors, which
    /// the CLI and the plugin search].
    #[arg(long, value_name = "DIR")]
    pub dest: Option<PathBuf>,
    /// Python with the trainer's requirements [default: $STEMFLOW_PYTHON, else <data dir>/venv;
    /// a development build also tries its source tree's .venv].
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,
    /// Replace a prior of that name already in the destination.
    #[arg(long)]
    pub force: bool,
    /// Delete this stem's checkpoints and start over.
    #[arg(long)]
    pub fresh: bool,
    /// Flow steps (K) of a new model.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub flow_steps: u32,
    /// Hidden channels of a new model's coupling networks.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub hidden: u32,
    /// Training batch (random 64-frame crops).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub batch: u32,
}

/// Where the run reads, keeps checkpoints and installs; all checked before Python starts.
struct Plan {
    stem: String,
    /// The recordings folder, absolute.
    recordings: PathBuf,
    /// The audio files under it, as the trainer will read them.
    audio_files: Vec<PathBuf>,
    /// The folder the prior is installed in.
    dest: PathBuf,
    /// `dest/<stem>`.
    target: PathBuf,
    /// `<data dir>/checkpoints/<stem>`.
    ckpt_dir: PathBuf,
}

/// Turns an OS error while doing `action` on `path` into a [`TrainError::Io`].
fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> TrainError {
    let path = path.to_path_buf();
    move |source| TrainError::Io { action, path, source }
}

/// The files under `dir` the trainer reads: [`find_files`], as `separate` searches, with the
/// trainer's extensions; nothing is left out (separated stems are recordings too).
fn audio_files(dir: &Path) -> Result<Vec<PathBuf>, TrainError> {
    fs::read_dir(dir).map_err(io_error("read", dir))?;
    Ok(find_files(&[dir.to_path_buf()], TRAINER_EXTENSIONS, &|_| false))
}

/// Writes `files` to `path`, one a line, for the trainer's `dir:` source; a name with a line
/// break in it cannot be listed, and is left out with a warning.
fn write_file_list(path: &Path, files: &[PathBuf]) -> Result<(), TrainError> {
    let mut text = Vec::new();
    for file in files {
        let bytes = path_bytes(file);
        if bytes.contains(&b'\n') || bytes.contains(&b'\r') {
            message::warning(format!("{}: left out (a line break in its name)", file.display()));
            continue;
        }
        text.extend_from_slice(&bytes);
        text.push(b'\n');
    }
    fs::write(path, text).map_err(io_error("write", path))
}

/// The bytes of `path` as the OS has them (Python's `os.fsdecode` reads them back).
#[cfg(unix)]
fn path_bytes(path: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    path.as_os_str().as_bytes().to_vec()
}

/// The path as UTF-8, elsewhere.
#[cfg(not(unix))]
fn path_bytes(path: &Path) -> Vec<u8> {
    path.to_string_lossy().into_owned().into_bytes()
}

/// The path whose OS bytes are `bytes` ([`path_bytes`] read back).
#[cfg(unix)]
fn path_from_bytes(bytes: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    PathBuf::from(std::ffi::OsStr::from_bytes(bytes))
}

/// The path from its UTF-8 bytes, elsewhere.
#[cfg(not(unix))]
fn path_from_bytes(bytes: &[u8]) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(bytes).into_owned())
}

/// The checkpoint files in `dir`: the trainer's `ckpt_*.npz`, and `ckpt_*.pkl` of the old pickle
/// format (never read, but `--fresh` removes them and they count as an earlier run).
fn checkpoints(dir: &Path) -> Vec<PathBuf> {
    let Ok(read_dir) = fs::read_dir(dir) else {
        return Vec::new();
    };
    read_dir
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("ckpt_") && (n.ends_with(".npz") || n.ends_with(".pkl")))
        })
        .collect()
}

impl Plan {
    /// Every check that needs no Python: name, recordings, destination, checkpoints.
    fn check(args: &TrainPriorArgs) -> Result<Plan, CliError> {
        if !(args.minutes.is_finite() && args.minutes > 0.0) {
            return Err(CliError::Usage(format!(
                "--minutes must be a positive number, found {}",
                args.minutes
            )));
        }
        let stem = args.stem.clone();
        if !is_valid_stem_name(&stem) {
            return Err(TrainError::BadStemName { name: stem }.into());
        }
        let recordings_error = |problem: &str| TrainError::Recordings {
            path: args.recordings.clone(),
            problem: problem.to_string(),
        };
        if !args.recordings.exists() {
            return Err(recordings_error("does not exist").into());
        }
        if !args.recordings.is_dir() {
            return Err(recordings_error("is not a folder").into());
        }
        let recordings = fs::canonicalize(&args.recordings).map_err(io_error("resolve", &args.recordings))?;
        if recordings.to_string_lossy().contains(',') {
            return Err(TrainError::CommaInPath { path: recordings }.into());
        }
        let audio_files = audio_files(&recordings)?;
        if audio_files.is_empty() {
            return Err(TrainError::NoAudio { path: recordings }.into());
        }
        let dest = match &args.dest {
            Some(dest) => dest.clone(),
            None => user_priors_dir().ok_or(TrainError::NoDataDir {
                what: "the installed priors (or pass --dest)",
            })?,
        };
        let target = dest.join(&stem);
        if !args.force && target.symlink_metadata().is_ok() {
            return Err(TrainError::AlreadyInstalled { dir: target }.into());
        }
        let ckpt_dir = data_dir()
            .ok_or(TrainError::NoDataDir {
                what: "the training checkpoints",
            })?
            .join("checkpoints")
            .join(&stem);
        let plan = Plan {
            stem,
            recordings,
            audio_files,
            dest,
            target,
            ckpt_dir,
        };
        if !args.fresh {
            plan.check_checkpoint_source()?;
        }
        Ok(plan)
    }

    fn record_path(&self) -> PathBuf {
        self.ckpt_dir.join(RECORDINGS_RECORD)
    }

    /// Resuming is only allowed from checkpoints of the same recordings folder.
    fn check_checkpoint_source(&self) -> Result<(), TrainError> {
        if checkpoints(&self.ckpt_dir).is_empty() {
            return Ok(());
        }
        let Ok(record) = fs::read(self.record_path()) else {
            return Ok(());
        };
        let other = record.strip_suffix(b"\n").unwrap_or(&record);
        if other == path_bytes(&self.recordings).as_slice() {
            return Ok(());
        }
        Err(TrainError::OtherRecordings {
            ckpt_dir: self.ckpt_dir.clone(),
            other: path_from_bytes(other),
            recordings: self.recordings.clone(),
        })
    }

    /// Makes the checkpoint folder (emptied with `fresh`) and records the recordings folder in it.
    fn prepare_checkpoints(&self, fresh: bool) -> Result<(), TrainError> {
        if fresh {
            for old in checkpoints(&self.ckpt_dir) {
                fs::remove_file(&old).map_err(io_error("remove", &old))?;
            }
        }
        fs::create_dir_all(&self.ckpt_dir).map_err(io_error("create", &self.ckpt_dir))?;
        let record = self.record_path();
        let mut text = path_bytes(&self.recordings);
        text.push(b'\n');
        fs::write(&record, text).map_err(io_error("write", &record))
    }
}

/// Stores the exported prior's level gains in its manifest, then loads it with the engine
/// (manifest, hashes, graph interfaces, the stored gains) and decodes one frame from z = 0,
/// which must come out finite.
fn validate(runtime: &Runtime, shared: &SharedArgs, dir: &Path) -> Result<Manifest, TrainError> {
    store_level_gains(runtime, dir, &shared.session_options())?;
    let mut prior = Prior::load(runtime, dir, &shared.session_options()).map_err(TrainError::Invalid)?;
    let z = vec![0.0f32; BINS * FRAMES];
    let mut s = vec![0.0f32; BINS * FRAMES];
    prior
        .decode_into(&z, FRAMES, &mut s)
        .map_err(TrainError::Invalid)?;
    Ok(prior.manifest().clone())
}

/// Renames `staged` to `target`; with `replace`, an existing `target` is first moved into `trash`
/// (inside the temporary folder, removed with it) and put back if the second rename fails.
fn install(staged: &Path, target: &Path, replace: bool, trash: &Path) -> Result<(), TrainError> {
    let old = trash.join("replaced");
    let had_old = target.symlink_metadata().is_ok();
    if had_old {
        if !replace {
            return Err(TrainError::AlreadyInstalled {
                dir: target.to_path_buf(),
            });
        }
        fs::rename(target, &old).map_err(io_error("move aside", target))?;
    }
    fs::rename(staged, target).map_err(|e| {
        if had_old {
            let _ = fs::rename(&old, target);
        }
        io_error("install into", target)(e)
    })
}

/// Run `train-prior`: check, train (streaming the trainer's log), validate, install.
pub fn run(shared: &SharedArgs, args: TrainPriorArgs) -> Result<(), CliError> {
    let plan = Plan::check(&args)?;
    let places = trainer::Places::of_this_process();
    let trainer_dir = trainer::locate_trainer(&places)?;
    let python = trainer::locate_python(args.python.as_deref(), &places, &trainer_dir)?;
    trainer::check_imports(&python, &trainer_dir)?;
    let runtime = shared.runtime()?;
    fs::create_dir_all(&plan.dest).map_err(io_error("create", &plan.dest))?;
    let staging = tempfile::Builder::new()
        .prefix(&format!(".train-{}-", plan.stem))
        .tempdir_in(&plan.dest)
        .map_err(io_error("create a temporary folder in", &plan.dest))?;
    let staged = staging.path().join(&plan.stem);
    plan.prepare_checkpoints(args.fresh)?;
    println!(
        "training prior `{}` from {} audio file(s) in {} with {}",
        plan.stem,
        plan.audio_files.len(),
        plan.recordings.display(),
        python.display()
    );
    println!(
        "checkpoints: {} (run the same command again to resume; --fresh starts over)",
        plan.ckpt_dir.display()
    );
    let list = plan.ckpt_dir.join(RECORDINGS_LIST);
    write_file_list(&list, &plan.audio_files)?;
    let mut source = OsString::from("dir:");
    source.push(&list);
    let mut command = trainer::python_command(&python, &trainer_dir);
    command.args(["-m", "stemflow_training.train"]);
    let settings: [(&str, OsString); 11] = [
        ("--stem", plan.stem.clone().into()),
        ("--source", source),
        ("--seconds-of-audio", ALL_AUDIO_SECONDS.into()),
        ("--valid-seconds", ALL_AUDIO_SECONDS.into()),
        ("--steps", args.steps.to_string().into()),
        ("--batch", args.batch.to_string().into()),
        ("--flow-steps", args.flow_steps.to_string().into()),
        ("--hidden", args.hidden.to_string().into()),
        ("--max-minutes", args.minutes.to_string().into()),
        ("--out", staged.clone().into()),
        ("--ckpt-dir", plan.ckpt_dir.clone().into()),
    ];
    for (flag, value) in settings {
        command.arg(flag).arg(value);
    }
    let interrupted = || TrainError::Interrupted {
        ckpt_dir: plan.ckpt_dir.clone(),
    };
    match trainer::run_streamed(command).map_err(io_error("run", &python))? {
        RunEnd::Interrupted => return Err(interrupted().into()),
        RunEnd::Exited {
            status,
            last_error_line,
        } if !status.success() => {
            return Err(TrainError::TrainerFailed {
                status: status.to_string(),
                message: last_error_line.unwrap_or_else(|| "no message".into()),
                ckpt_dir: plan.ckpt_dir.clone(),
            }
            .into())
        }
        RunEnd::Exited { .. } => {}
    }
    let manifest = validate(&runtime, shared, &staged)?;
    if trainer::stop_requested() {
        return Err(interrupted().into());
    }
    install(&staged, &plan.target, args.force, staging.path())?;
    drop(staging);
    let bits = |v: Option<f64>| v.map_or("?".to_string(), |v| format!("{v:.3}"));
    println!(
        "installed prior `{}` ({}, {} steps, bits/dim train {} valid {}) in {}",
        plan.stem,
        describe(&manifest),
        manifest.training.steps.unwrap_or(0),
        bits(manifest.training.train_bits_per_dim),
        bits(manifest.training.valid_bits_per_dim),
        plan.target.display()
    );
    if !shared.search_dirs().contains(&plan.dest) {
        println!(
            "{} is not searched by default: pass --priors {0} or add it to $STEMFLOW_PRIORS",
            plan.dest.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The endings listed here are the trainer's own (`stemflow_training/data.py`, `AUDIO_EXT`):
    /// a file one side counts and the other skips would be trained on without being listed, or
    /// listed and then missing.
    #[test]
    fn the_endings_are_the_trainers() {
        let data_py = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("models/training/stemflow_training/data.py"),
        )
        .unwrap();
        let line = data_py
            .lines()
            .find(|l| l.starts_with("AUDIO_EXT = "))
            .expect("data.py defines AUDIO_EXT");
        let mut python: Vec<String> = line
            .split('\'')
            .filter(|part| part.starts_with('.'))
            .map(|part| part.trim_start_matches('.').to_string())
            .collect();
        let mut rust: Vec<String> = TRAINER_EXTENSIONS.iter().map(|e| e.to_string()).collect();
        python.sort();
        rust.sort();
        assert_eq!(rust, python);
    }

    #[test]
    fn audio_files_are_counted_recursively_by_ending() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir_all(tmp.path().join("a/b")).unwrap();
        for name in [
            "x.WAV",
            "a/y.flac",
            "a/b/z.Aiff",
            "a/b/w.ogg",
            "notes.txt",
            "a/take.mp3",
        ] {
            fs::write(tmp.path().join(name), "").unwrap();
        }
        assert_eq!(audio_files(tmp.path()).unwrap().len(), 4);
    }

    /// Linked folders are followed as `separate` follows them, a cycle adds nothing, and the
    /// trainer is given exactly the files found.
    #[cfg(unix)]
    #[test]
    fn recordings_are_found_as_separate_finds_inputs_and_listed_for_the_trainer() {
        let tmp = tempfile::tempdir().unwrap();
        let recordings = tmp.path().join("rec");
        fs::create_dir_all(recordings.join("a")).unwrap();
        fs::create_dir_all(tmp.path().join("elsewhere")).unwrap();
        fs::write(recordings.join("a/x.wav"), "").unwrap();
        fs::write(tmp.path().join("elsewhere/y.flac"), "").unwrap();
        std::os::unix::fs::symlink(tmp.path().join("elsewhere"), recordings.join("linked")).unwrap();
        std::os::unix::fs::symlink(&recordings, recordings.join("a/loop")).unwrap();
        let files = audio_files(&recordings).unwrap();
        assert_eq!(
            files,
            vec![recordings.join("a/x.wav"), recordings.join("linked/y.flac")]
        );
        let list = tmp.path().join("list.txt");
        write_file_list(&list, &files).unwrap();
        let text = fs::read_to_string(&list).unwrap();
        let listed: Vec<PathBuf> = text.lines().map(PathBuf::from).collect();
        assert_eq!(listed, files);
    }

    #[test]
    fn install_replaces_only_when_asked() {
        let tmp = tempfile::tempdir().unwrap();
        let (staged, target, trash) = (
            tmp.path().join("new"),
            tmp.path().join("stem"),
            tmp.path().join("trash"),
        );
        for dir in [&staged, &target, &trash] {
            fs::create_dir_all(dir).unwrap();
        }
        fs::write(staged.join("manifest.json"), "new").unwrap();
        fs::write(target.join("manifest.json"), "old").unwrap();
        assert!(matches!(
            install(&staged, &target, false, &trash),
            Err(TrainError::AlreadyInstalled { .. })
        ));
        assert_eq!(fs::read_to_string(target.join("manifest.json")).unwrap(), "old");
        install(&staged, &target, true, &trash).unwrap();
        assert_eq!(fs::read_to_string(target.join("manifest.json")).unwrap(), "new");
        assert!(!staged.exists());
    }
}
