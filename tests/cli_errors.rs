//! Every error case of `stemflow separate`: one clear line on stderr, a non-zero exit, no panic,
//! and no file left in the output folder.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn stemflow() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stemflow"))
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A short valid stereo mix written into `dir`.
fn good_mix_in(dir: &Path) -> PathBuf {
    let path = dir.join("good.wav");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 44100,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(&path, spec).unwrap();
    for i in 0..44100 {
        let x = (8000.0 * (i as f32 * 0.05).sin()) as i16;
        writer.write_sample(x).unwrap();
        writer.write_sample(x / 2).unwrap();
    }
    writer.finalize().unwrap();
    path
}

/// Copy of the shipped priors in a temp dir, to break on purpose.
fn copy_priors(into: &Path) -> PathBuf {
    let dst = into.join("priors");
    for stem in ["sine", "noise"] {
        let from = repo("models/priors").join(stem);
        fs::create_dir_all(dst.join(stem)).unwrap();
        for entry in fs::read_dir(&from).unwrap() {
            let entry = entry.unwrap();
            if entry.path().is_file() {
                fs::copy(entry.path(), dst.join(stem).join(entry.file_name())).unwrap();
            }
        }
    }
    dst
}

/// Assert a clean failure: non-zero exit, one error line naming `needle`, no panic, no output files.
fn assert_clean_failure(output: &Output, needle: &str, out_dir: &Path) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "expected failure, got success; stderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "panicked: {stderr}");
    let error_lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("stemflow: error:"))
        .collect();
    assert_eq!(error_lines.len(), 1, "expected one error line, found: {stderr}");
    assert!(
        error_lines[0].to_lowercase().contains(&needle.to_lowercase()),
        "error line should mention `{needle}`: {}",
        error_lines[0]
    );
    if out_dir.exists() {
        let left: Vec<_> = fs::read_dir(out_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "output folder should stay empty, found {left:?}");
    }
}

fn separate(input: &Path, out: &Path, extra: &[&str]) -> Output {
    stemflow()
        .arg("separate")
        .arg(input)
        .arg("-o")
        .arg(out)
        .args(["--iterations", "2", "--quiet"])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn missing_input() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let output = separate(&tmp.path().join("nope.wav"), &out, &[]);
    assert_clean_failure(&output, "nope.wav", &out);
}

#[test]
fn empty_input() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("empty.wav");
    fs::write(&input, b"").unwrap();
    let out = tmp.path().join("out");
    assert_clean_failure(&separate(&input, &out, &[]), "empty.wav", &out);
}

#[test]
fn wav_without_samples() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("silent0.wav");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 44100,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    hound::WavWriter::create(&input, spec)
        .unwrap()
        .finalize()
        .unwrap();
    let out = tmp.path().join("out");
    assert_clean_failure(&separate(&input, &out, &[]), "silent0.wav", &out);
}

#[test]
fn corrupt_input() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("corrupt.wav");
    let mut bytes = fs::read(good_mix_in(tmp.path())).unwrap();
    bytes.truncate(60);
    bytes[8..12].copy_from_slice(b"XXXX");
    fs::write(&input, bytes).unwrap();
    let out = tmp.path().join("out");
    assert_clean_failure(&separate(&input, &out, &[]), "corrupt.wav", &out);
}

#[test]
fn unsupported_format() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("notes.txt");
    fs::write(&input, "these are not samples\n".repeat(100)).unwrap();
    let out = tmp.path().join("out");
    assert_clean_failure(&separate(&input, &out, &[]), "notes.txt", &out);
}

#[test]
fn unknown_stem() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    assert_clean_failure(
        &separate(&good_mix_in(tmp.path()), &out, &["--stems", "sine,kazoo"]),
        "kazoo",
        &out,
    );
}

#[test]
fn missing_prior_file() {
    let tmp = tempfile::tempdir().unwrap();
    let priors = copy_priors(tmp.path());
    fs::remove_file(priors.join("noise/grad.onnx")).unwrap();
    let out = tmp.path().join("out");
    let dir = priors.to_str().unwrap();
    let output = separate(
        &good_mix_in(tmp.path()),
        &out,
        &["--priors", dir, "--stems", "sine,noise"],
    );
    assert_clean_failure(&output, "grad.onnx", &out);
}

#[test]
fn corrupt_prior_file() {
    let tmp = tempfile::tempdir().unwrap();
    let priors = copy_priors(tmp.path());
    let graph = priors.join("sine/decode.onnx");
    let mut bytes = fs::read(&graph).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::write(&graph, bytes).unwrap();
    let out = tmp.path().join("out");
    let dir = priors.to_str().unwrap();
    let output = separate(
        &good_mix_in(tmp.path()),
        &out,
        &["--priors", dir, "--stems", "sine,noise"],
    );
    assert_clean_failure(&output, "sha256", &out);
}

#[test]
fn corrupt_manifest_names_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let priors = copy_priors(tmp.path());
    let manifest = priors.join("noise/manifest.json");
    let text = fs::read_to_string(&manifest)
        .unwrap()
        .replace("\"hop\": 256", "\"hop\": 512");
    fs::write(&manifest, text).unwrap();
    let out = tmp.path().join("out");
    let dir = priors.to_str().unwrap();
    let output = separate(
        &good_mix_in(tmp.path()),
        &out,
        &["--priors", dir, "--stems", "sine,noise"],
    );
    assert_clean_failure(&output, "hop", &out);
}

#[test]
fn missing_runtime() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let lib = tmp.path().join("libonnxruntime.so.1.31.1");
    let output = separate(
        &good_mix_in(tmp.path()),
        &out,
        &["--ort-lib", lib.to_str().unwrap()],
    );
    assert_clean_failure(&output, "libonnxruntime", &out);
}

#[test]
fn runtime_that_is_not_a_library() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let lib = tmp.path().join("libonnxruntime.so.1.31.1");
    fs::write(&lib, "not a shared object").unwrap();
    let output = separate(
        &good_mix_in(tmp.path()),
        &out,
        &["--ort-lib", lib.to_str().unwrap()],
    );
    assert_clean_failure(&output, "libonnxruntime", &out);
}

#[test]
fn unwritable_output_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a-file");
    fs::write(&file, "x").unwrap();
    let out = file.join("out");
    let output = separate(&good_mix_in(tmp.path()), &out, &[]);
    assert_clean_failure(&output, "out", &out);
}

#[test]
fn gamma_without_map_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    assert_clean_failure(
        &separate(&good_mix_in(tmp.path()), &out, &["--gamma", "0.5"]),
        "gamma",
        &out,
    );
}
