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
