//! `stemflow train-prior` end to end: a tiny prior (K = 2, hidden 8, 20 steps) trained by the
//! real Python trainer from generated 44.1 kHz stereo WAVs and one FLAC, installed into a temporary
//! destination, listed by `stemflow priors` and loaded and run by the engine.

use std::f32::consts::TAU;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use stemflow::engine::constants::{BINS, FRAMES};
use stemflow::engine::priors::prior::Prior;
use stemflow::engine::priors::runtime::{Runtime, RuntimeOptions, SessionOptions};

const RATE: u32 = 44_100;

/// The project venv's interpreter (made by `cargo xtask test`), if present.
fn venv_python() -> Option<PathBuf> {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    python.is_file().then_some(python)
}

/// `seconds` of a stereo tone with a few harmonics, different for each `seed`.
fn tone(seed: usize, seconds: f32) -> Vec<[f32; 2]> {
    let f0 = 55.0 * (1.0 + seed as f32 * 0.37);
    (0..(seconds * RATE as f32) as usize)
        .map(|i| {
            let t = i as f32 / RATE as f32;
            let x: f32 = (1..=4)
                .map(|h| (TAU * f0 * h as f32 * t).sin() * 0.25 / h as f32)
                .sum::<f32>()
                * (0.6 + 0.4 * (TAU * 0.5 * t).sin());
            [x, 0.8 * x]
        })
        .collect()
}

fn write_wav(path: &Path, frames: &[[f32; 2]]) {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).unwrap();
    for frame in frames {
        for sample in frame {
            writer.write_sample((sample * 32767.0) as i16).unwrap();
        }
    }
    writer.finalize().unwrap();
}

#[test]
fn trains_installs_and_loads_a_tiny_prior() {
    let Some(python) = venv_python() else {
        eprintln!(
            "SKIPPED trains_installs_and_loads_a_tiny_prior: no {}/.venv/bin/python (`cargo xtask test` makes it)",
            env!("CARGO_MANIFEST_DIR")
        );
        return;
    };
    let runtime = Runtime::load(&RuntimeOptions::default()).expect("ONNX Runtime (run `cargo xtask setup`)");
    let tmp = tempfile::tempdir().unwrap();
    let recordings = tmp.path().join("recordings");
    fs::create_dir_all(recordings.join("more")).unwrap();
    for (seed, name) in ["a.wav", "b.wav", "more/c.wav"].iter().enumerate() {
        write_wav(&recordings.join(name), &tone(seed, 6.0));
    }
    // The FLAC (sorted last) is the held-out file; soundfile writes it, as the trainer reads it.
    let wav = recordings.join("d.wav");
    write_wav(&wav, &tone(3, 6.0));
    let flac = recordings.join("e.flac");
    let status = Command::new(&python)
        .args([
            "-c",
            "import sys, soundfile as sf; y, r = sf.read(sys.argv[1]); sf.write(sys.argv[2], y, r)",
        ])
        .arg(&wav)
        .arg(&flac)
        .status()
        .unwrap();
    assert!(status.success(), "could not write {}", flac.display());
    fs::remove_file(&wav).unwrap();

    let dest = tmp.path().join("dest");
    let data = tmp.path().join("data");
    let output = Command::new(env!("CARGO_BIN_EXE_stemflow"))
        .arg("train-prior")
        .args(["--stem", "tiny-test"])
        .arg(&recordings)
        .arg("--dest")
        .arg(&dest)
        .arg("--python")
        .arg(&python)
        .args([
            "--steps",
            "20",
            "--flow-steps",
            "2",
            "--hidden",
            "8",
            "--batch",
            "2",
            "--minutes",
            "10",
        ])
        .arg("--ort-lib")
        .arg(runtime.library_path())
        .env("STEMFLOW_DATA_DIR", &data)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "train-prior failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("installed prior `tiny-test`"), "{stdout}");
    assert!(
        stdout.contains("step 20 eval"),
        "the trainer's log should be streamed: {stdout}"
    );

    let installed = dest.join("tiny-test");
    let left: Vec<_> = fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        ["tiny-test"],
        "only the prior should be left in the destination"
    );
    let ckpt_dir = data.join("checkpoints/tiny-test");
    assert!(
        fs::read_dir(&ckpt_dir).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("ckpt_")),
        "no checkpoint in {}",
        ckpt_dir.display()
    );

    let listing = Command::new(env!("CARGO_BIN_EXE_stemflow"))
        .arg("priors")
        .arg("--priors")
        .arg(&dest)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    let line = listing
        .lines()
        .find(|l| l.starts_with("tiny-test"))
        .unwrap_or_else(|| panic!("`stemflow priors` does not list tiny-test: {listing}"));
    assert!(line.contains(" ok ") && line.contains("K=2 hidden=8"), "{line}");

    let mut prior = Prior::load(&runtime, &installed, &SessionOptions::default()).unwrap();
    assert_eq!(prior.stem(), "tiny-test");
    assert_eq!(prior.manifest().training.steps, Some(20));
    // The export stores the weights once, in the file the manifest lists; the installed folder
    // carries it and the graphs read it from there.
    let weights = prior.manifest().graphs.weights.clone().expect("graphs.weights");
    assert!(installed.join(&weights.file).is_file());
    let z = vec![0.0f32; BINS * FRAMES];
    let mut s = vec![0.0f32; BINS * FRAMES];
    prior.decode_into(&z, FRAMES, &mut s).unwrap();
    assert!(s.iter().all(|v| v.is_finite() && *v >= 0.0));
}

/// A stand-in for Python, so the command's own behaviour is tested without training: the import
/// check passes, and `-m stemflow_training.train` does what `$FAKE_TRAINER` says.
#[cfg(unix)]
const FAKE_PYTHON: &str = r#"#!/bin/sh
if [ "$1" = "-c" ]; then exit 0; fi
ckpt=""; prev=""
for a in "$@"; do
  if [ "$prev" = "--ckpt-dir" ]; then ckpt="$a"; fi
  prev="$a"
done
echo "fake trainer in $(pwd) run by $0"
case "$FAKE_TRAINER" in
  hang)
    trap '' TERM
    sleep 1000 &
    echo $! > "$FAKE_DIR/grandchild.pid.tmp"; mv "$FAKE_DIR/grandchild.pid.tmp" "$FAKE_DIR/grandchild.pid"
    wait
    ;;
  log)
    printf 'before\n\377\376 not utf-8\nafter\n'
    i=0
    while [ $i -lt 3000 ]; do echo "line $i of the log, long enough to fill a pipe's buffer"; i=$((i+1)); done
    echo "fake failure" >&2
    exit 3
    ;;
  *)
    : > "$ckpt/ckpt_000250.npz"
    echo "fake failure" >&2
    exit 1
    ;;
esac
"#;

/// Writes the fake interpreter to `path`, executable.
#[cfg(unix)]
fn write_fake_python(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, FAKE_PYTHON).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// A trainer package as far as the command checks it: `stemflow_training/train.py` and the
/// requirements file.
fn write_fake_trainer(dir: &Path) {
    fs::create_dir_all(dir.join("stemflow_training")).unwrap();
    fs::write(dir.join("stemflow_training/train.py"), "").unwrap();
    fs::write(dir.join("requirements.txt"), "jax\n").unwrap();
}

/// A recordings folder the command accepts (it counts audio files by name; the fake reads none).
fn fake_recordings(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join("take.wav"), "").unwrap();
}

/// `stemflow train-prior --stem fake REC --dest DEST` with the fake trainer, the set-up runtime
/// and `data` as the data folder; no interpreter or trainer from the environment.
#[cfg(unix)]
fn fake_train_command(exe: &Path, recordings: &Path, tmp: &Path, mode: &str) -> Command {
    let runtime = Runtime::load(&RuntimeOptions::default()).expect("ONNX Runtime (run `cargo xtask setup`)");
    let mut command = Command::new(exe);
    command
        .arg("train-prior")
        .args(["--stem", "fake"])
        .arg(recordings)
        .arg("--dest")
        .arg(tmp.join("dest"))
        .arg("--ort-lib")
        .arg(runtime.library_path())
        .env("STEMFLOW_DATA_DIR", tmp.join("data"))
        .env("FAKE_TRAINER", mode)
        .env("FAKE_DIR", tmp)
        .env_remove("STEMFLOW_PYTHON")
        .env_remove("STEMFLOW_TRAINING_DIR");
    command
}

/// [`fake_train_command`] on the built `stemflow`, with a fake interpreter (`--python`) and trainer
/// (`$STEMFLOW_TRAINING_DIR`) made in `tmp`.
#[cfg(unix)]
fn fake_train_in(tmp: &Path, recordings: &Path, mode: &str) -> Command {
    let python = tmp.join("python");
    write_fake_python(&python);
    let trainer = tmp.join("training");
    write_fake_trainer(&trainer);
    let mut command = fake_train_command(Path::new(env!("CARGO_BIN_EXE_stemflow")), recordings, tmp, mode);
    command
        .arg("--python")
        .arg(&python)
        .env("STEMFLOW_TRAINING_DIR", &trainer);
    command
}

/// A shipped `stemflow` finds the trainer carried beside it (`training/`) and the Python
/// environment in the data folder (`venv/`), not the source tree it was built from.
#[cfg(unix)]
#[test]
fn a_bundled_cli_finds_its_trainer_beside_it_and_python_in_the_data_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("Stemflow");
    fs::create_dir_all(&bundle).unwrap();
    let exe = bundle.join("stemflow");
    fs::copy(env!("CARGO_BIN_EXE_stemflow"), &exe).unwrap();
    write_fake_trainer(&bundle.join("training"));
    let python = tmp.path().join("data/venv/bin/python");
    write_fake_python(&python);
    let recordings = tmp.path().join("rec");
    fake_recordings(&recordings);
    let output = fake_train_command(&exe, &recordings, tmp.path(), "fail")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let trainer_dir = bundle.join("training");
    assert!(
        stdout.contains(&format!(
            "fake trainer in {} run by {}",
            trainer_dir.display(),
            python.display()
        )),
        "{stdout}\n{stderr}"
    );
    assert!(stderr.contains("fake failure"), "{stderr}");
}

/// Ctrl-C (here SIGTERM) during training ends the trainer's whole process group, a trainer that
/// ignores SIGTERM included (SIGKILL after a grace period): no process is left behind, and the
/// command ends as a stopped command does.
#[cfg(unix)]
#[test]
fn a_stop_ends_the_trainers_whole_process_group() {
    use std::time::{Duration, Instant};
    let tmp = tempfile::tempdir().unwrap();
    let recordings = tmp.path().join("rec");
    fake_recordings(&recordings);
    let mut child = fake_train_in(tmp.path(), &recordings, "hang")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid_file = tmp.path().join("grandchild.pid");
    let start = Instant::now();
    while !pid_file.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the fake trainer never started"
        );
        if let Some(status) = child.try_wait().unwrap() {
            panic!("stemflow ended before training: {status}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let grandchild: i32 = fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let stopped = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if stopped.elapsed() > Duration::from_secs(30) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let alive = |pid: i32| {
        fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| {
                !stat
                    .rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(false)
    };
    let grandchild_alive = alive(grandchild);
    if status.is_none() || grandchild_alive {
        // Leave nothing behind, then fail.
        let _ = child.kill();
        let _ = child.wait();
        // SAFETY: as above.
        unsafe { libc::kill(grandchild, libc::SIGKILL) };
    }
    let status = status.expect("stemflow did not end within 30 s of SIGTERM");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        !grandchild_alive,
        "the trainer's child (pid {grandchild}) is still running"
    );
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert_eq!(status.code(), Some(130), "{stderr}");
}

/// A log line that is not UTF-8 is printed (lossily) and the log goes on: the trainer is not
/// killed by a closed pipe, and its own exit status and last error line are reported.
#[cfg(unix)]
#[test]
fn a_log_line_that_is_not_utf8_does_not_stop_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let recordings = tmp.path().join("rec");
    fake_recordings(&recordings);
    let output = fake_train_in(tmp.path(), &recordings, "log").output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stdout.contains("\u{FFFD}\u{FFFD} not utf-8\nafter\n"), "{stdout}");
    assert!(stdout.contains("line 2999 of the log"), "the log stopped early");
    assert!(
        stderr.contains("exit status: 3") && stderr.contains("fake failure"),
        "{stderr}"
    );
}

/// A recordings folder whose name is not UTF-8 is recorded beside the checkpoints byte for byte,
/// so another folder whose name differs only in those bytes is not taken for it.
#[cfg(unix)]
#[test]
fn recordings_folders_with_names_that_are_not_utf8_are_told_apart() {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let tmp = tempfile::tempdir().unwrap();
    let first = tmp.path().join(std::ffi::OsString::from_vec(b"rec\xff".to_vec()));
    let second = tmp.path().join(std::ffi::OsString::from_vec(b"rec\xfe".to_vec()));
    fake_recordings(&first);
    fake_recordings(&second);
    let run = |recordings: &Path| fake_train_in(tmp.path(), recordings, "fail").output().unwrap();
    let output = run(&first);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("fake failure"), "{stderr}");
    let record = fs::read(tmp.path().join("data/checkpoints/fake/recordings.txt")).unwrap();
    let mut expected = fs::canonicalize(&first).unwrap().as_os_str().as_bytes().to_vec();
    expected.push(b'\n');
    assert_eq!(record, expected);
    let output = run(&second);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("were trained on") && !stderr.contains("fake failure"),
        "{stderr}"
    );
}
