//! `stemflow separate` from the outside: every error case (one clear line on stderr, a non-zero
//! exit, no panic, no file left in the output folder), and batches: folders, name collisions, a
//! failing file, resuming, `--force`, `--shard`, `--report`, `--json`, and the output formats.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use stemflow::engine::files::audio_file::read_all;

fn stemflow() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stemflow"))
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A short valid stereo mix written into `dir`.
fn good_mix_in(dir: &Path) -> PathBuf {
    let path = dir.join("good.wav");
    tone_wav(&path, 2, 1.0);
    path
}

/// Copy of the two synthetic test priors (`tests/fixtures/priors`) in a temp dir, to break on purpose.
fn copy_priors(into: &Path) -> PathBuf {
    let dst = into.join("priors");
    for stem in ["sine", "noise"] {
        let from = repo("tests/fixtures/priors").join(stem);
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

/// [`separate`] into the two synthetic stems of `priors`, which must succeed.
fn separate_into_sine_and_noise(input: &Path, out: &Path, priors: &Path) {
    let output = separate(
        input,
        out,
        &["--priors", priors.to_str().unwrap(), "--stems", "sine,noise"],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
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
        &separate(&good_mix_in(tmp.path()), &out, &["--stems", "bass,kazoo"]),
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

#[test]
fn level_calibration_options_out_of_range_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let cases = [
        ("level-calibration", ["-1", "5", "NaN"]),
        ("level-trim", ["-0.1", "0.5", "NaN"]),
        ("mask-exponent", ["0", "4.5", "NaN"]),
    ];
    for (option, bads) in cases {
        for bad in bads {
            // `--option=VALUE`: a negative value is not taken for a flag.
            let arg = format!("--{option}={bad}");
            assert_clean_failure(
                &separate(&good_mix_in(tmp.path()), &out, &[arg.as_str()]),
                option,
                &out,
            );
        }
    }
}

/// `stemflow train-prior --stem STEM RECORDINGS --dest DEST EXTRA...`, its checkpoints under
/// `data` (never the user's data dir) and no interpreter or trainer from the environment unless
/// `env` names one.
fn train_prior(
    data: &Path,
    stem: &str,
    recordings: &Path,
    dest: &Path,
    extra: &[&Path],
    env: &[(&str, &Path)],
) -> Output {
    let mut command = stemflow();
    command
        .arg("train-prior")
        .arg(format!("--stem={stem}"))
        .arg(recordings)
        .arg("--dest")
        .arg(dest)
        .args(extra)
        .env("STEMFLOW_DATA_DIR", data)
        .env_remove("STEMFLOW_PYTHON")
        .env_remove("STEMFLOW_TRAINING_DIR");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap()
}

/// A recordings folder with one short WAV, and a destination folder path (not created).
fn recordings_and_dest(tmp: &Path) -> (PathBuf, PathBuf) {
    let recordings = tmp.join("recordings");
    fs::create_dir_all(&recordings).unwrap();
    good_mix_in(&recordings);
    (recordings, tmp.join("dest"))
}

#[test]
fn train_prior_missing_recordings_or_no_audio() {
    let tmp = tempfile::tempdir().unwrap();
    let no_audio = tmp.path().join("recordings");
    fs::create_dir_all(no_audio.join("sub")).unwrap();
    fs::write(no_audio.join("notes.txt"), "no audio here").unwrap();
    fs::write(no_audio.join("sub/take.mp3"), "mp3 is not read by the trainer").unwrap();
    let missing = tmp.path().join("no-such-recordings");
    let dest = tmp.path().join("dest");
    for (recordings, needle) in [
        (&missing, "no-such-recordings does not exist"),
        (&no_audio, "no audio files"),
    ] {
        let output = train_prior(tmp.path(), "strings", recordings, &dest, &[], &[]);
        assert_clean_failure(&output, needle, &dest);
    }
}

#[test]
fn train_prior_bad_stem_names() {
    let tmp = tempfile::tempdir().unwrap();
    let (recordings, dest) = recordings_and_dest(tmp.path());
    for name in ["Strings", "../strings", "a/b", "-lead", "", "organ 2"] {
        let output = train_prior(tmp.path(), name, &recordings, &dest, &[], &[]);
        assert_clean_failure(&output, "not a valid stem name", &dest);
    }
}

#[test]
fn train_prior_existing_prior_needs_force() {
    let tmp = tempfile::tempdir().unwrap();
    let (recordings, dest) = recordings_and_dest(tmp.path());
    let existing = dest.join("strings");
    fs::create_dir_all(&existing).unwrap();
    fs::write(existing.join("manifest.json"), "{}").unwrap();
    let output = train_prior(tmp.path(), "strings", &recordings, &dest, &[], &[]);
    assert_clean_failure(&output, "pass --force", &tmp.path().join("nothing"));
    let left: Vec<_> = fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["strings"], "destination changed: {left:?}");
    assert_eq!(fs::read_to_string(existing.join("manifest.json")).unwrap(), "{}");
    assert!(!tmp.path().join("checkpoints").exists());
}

#[test]
fn train_prior_python_not_found() {
    let tmp = tempfile::tempdir().unwrap();
    let (recordings, dest) = recordings_and_dest(tmp.path());
    let missing = tmp.path().join("no-python/bin/python3");
    let flag = [Path::new("--python"), missing.as_path()];
    let output = train_prior(tmp.path(), "strings", &recordings, &dest, &flag, &[]);
    assert_clean_failure(&output, "no-python/bin/python3 (from --python)", &dest);
    let env = [("STEMFLOW_PYTHON", missing.as_path())];
    let output = train_prior(tmp.path(), "strings", &recordings, &dest, &[], &env);
    assert_clean_failure(&output, "(from $STEMFLOW_PYTHON)", &dest);
    assert!(!tmp.path().join("checkpoints").exists());
}

#[test]
fn train_prior_trainer_not_found() {
    let tmp = tempfile::tempdir().unwrap();
    let (recordings, dest) = recordings_and_dest(tmp.path());
    // Any existing file passes the interpreter lookup; the trainer is looked for before it runs.
    let python = std::env::current_exe().unwrap();
    let nowhere = tmp.path().join("no-trainer");
    let flag = [Path::new("--python"), python.as_path()];
    let env = [("STEMFLOW_TRAINING_DIR", nowhere.as_path())];
    let output = train_prior(tmp.path(), "strings", &recordings, &dest, &flag, &env);
    assert_clean_failure(&output, "no stemflow_training/train.py in ", &dest);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no-trainer (from $STEMFLOW_TRAINING_DIR)"),
        "{stderr}"
    );
}

#[test]
fn a_stem_named_twice_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let output = separate(
        &good_mix_in(tmp.path()),
        &out,
        &[
            "--priors",
            copy_priors(tmp.path()).to_str().unwrap(),
            "--stems",
            "sine,sine",
        ],
    );
    assert_clean_failure(&output, "twice", &out);
}

#[test]
fn an_output_folder_that_would_replace_the_input_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let priors = copy_priors(tmp.path());
    let input = tmp.path().join("sine.wav");
    fs::rename(good_mix_in(tmp.path()), &input).unwrap();
    let before = fs::read(&input).unwrap();
    let output = separate(&input, tmp.path(), &["--priors", priors.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("would replace the input"), "{stderr}");
    assert_eq!(fs::read(&input).unwrap(), before, "the input is untouched");
    assert!(!tmp.path().join("noise.wav").exists(), "no stem was written");
}

/// Ctrl-C mid-separation: the command stops, says so, and leaves no stem or partial file, nor
/// the output folder it made.
#[cfg(unix)]
#[test]
fn an_interrupt_leaves_no_partial_files() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let child = stemflow()
        .arg("separate")
        .arg(good_mix_in(tmp.path()))
        .arg("-o")
        .arg(&out)
        .args(["--priors", copy_priors(tmp.path()).to_str().unwrap()])
        .args(["--iterations", "100000", "--quiet"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    // The hidden partial stems appear once the priors are loaded and the first frame starts.
    while fs::read_dir(&out).map_or(0, |d| {
        d.flatten().filter(|e| e.file_name() != ".stemflow.lock").count()
    }) == 0
    {
        assert!(started.elapsed().as_secs() < 60, "no partial stems appeared");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    // SAFETY: sending SIGINT to the child we started.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("stopped before the end"), "{stderr}");
    assert!(!out.exists(), "left behind: {:?}", files_under(&out));
}

/// A file whose audio stops long before its header says, after several frames were separated
/// and partly written: one error line, nothing left in the output folder.
#[test]
fn a_file_that_fails_mid_decode_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("cut.wav");
    tone_wav(&input, 2, 20.0);
    let bytes = fs::read(&input).unwrap();
    fs::write(&input, &bytes[..bytes.len() * 3 / 4]).unwrap();
    let out = tmp.path().join("out");
    let priors = copy_priors(tmp.path());
    assert_clean_failure(
        &separate(&input, &out, &["--priors", priors.to_str().unwrap()]),
        "cut.wav",
        &out,
    );
}

/// A `seconds`-long plain-PCM (format tag 1) 16-bit WAV of `channels` channels at 44.1 kHz, each
/// channel its own tone, written by hand: hound writes WAVE_FORMAT_EXTENSIBLE above two channels.
fn tone_wav(path: &Path, channels: u16, seconds: f32) {
    let frames = (44100.0 * seconds) as u32;
    let data_len = frames * u32::from(channels) * 2;
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"RIFF");
    bytes.extend_from_slice(&(36 + data_len).to_le_bytes());
    bytes.extend_from_slice(b"WAVEfmt ");
    bytes.extend_from_slice(&16u32.to_le_bytes());
    bytes.extend_from_slice(&1u16.to_le_bytes()); // PCM
    bytes.extend_from_slice(&channels.to_le_bytes());
    bytes.extend_from_slice(&44100u32.to_le_bytes());
    bytes.extend_from_slice(&(44100 * u32::from(channels) * 2).to_le_bytes());
    bytes.extend_from_slice(&(channels * 2).to_le_bytes());
    bytes.extend_from_slice(&16u16.to_le_bytes());
    bytes.extend_from_slice(b"data");
    bytes.extend_from_slice(&data_len.to_le_bytes());
    for i in 0..frames {
        for c in 0..channels {
            let x = 6000.0 * (i as f32 * 0.01 * f32::from(c + 1)).sin();
            bytes.extend_from_slice(&(x as i16).to_le_bytes());
        }
    }
    fs::write(path, bytes).unwrap();
}

/// The samples of a 32-bit float WAV's data chunk, after checking its header's channel count.
fn float_wav_data(path: &Path, channels: u16) -> Vec<f32> {
    let bytes = fs::read(path).unwrap();
    assert_eq!(&bytes[..4], b"RIFF");
    let mut at = 12;
    let mut data = None;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        let body = &bytes[at + 8..at + 8 + len];
        if id == b"fmt " {
            assert_eq!(u16::from_le_bytes([body[2], body[3]]), channels);
            assert_eq!(u16::from_le_bytes([body[14], body[15]]), 32);
        } else if id == b"data" {
            data = Some(body);
        }
        at += 8 + len + (len & 1);
    }
    data.expect("a data chunk")
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

/// 26 channels in, 26 channels per stem out, and the stems still sum to the input.
#[test]
fn twenty_six_channels_are_separated_channel_for_channel() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("many.wav");
    tone_wav(&input, 26, 1.5);
    let out = tmp.path().join("out");
    let priors = copy_priors(tmp.path());
    separate_into_sine_and_noise(&input, &out, &priors);
    let mix = read_all(&input).unwrap();
    // Past 18 channels the stems carry the plain float tag (3), not WAVE_FORMAT_EXTENSIBLE,
    // whose channel mask has no positions for them: Stemflow's own reader opens them, and the
    // raw data chunk says the same.
    let stems: Vec<Vec<f32>> = ["sine", "noise"]
        .iter()
        .map(|s| float_wav_data(&out.join(format!("{s}.wav")), 26))
        .collect();
    for s in ["sine", "noise"] {
        let path = out.join(format!("{s}.wav"));
        assert_eq!(&fs::read(&path).unwrap()[20..22], &3u16.to_le_bytes());
        let decoded = read_all(&path).unwrap();
        assert_eq!(decoded.channels.len(), 26);
        let raw = float_wav_data(&path, 26);
        for (c, channel) in decoded.channels.iter().enumerate() {
            assert!(
                channel.iter().enumerate().all(|(i, &x)| x == raw[i * 26 + c]),
                "{s}: channel {c}"
            );
        }
    }
    assert_eq!(mix.channels.len(), 26);
    let (mut signal, mut residual) = (0.0f64, 0.0f64);
    for (c, channel) in mix.channels.iter().enumerate() {
        for (i, &x) in channel.iter().enumerate() {
            let sum: f32 = stems.iter().map(|s| s[i * 26 + c]).sum();
            signal += f64::from(x).powi(2);
            residual += f64::from(sum - x).powi(2);
        }
    }
    assert!(stems.iter().all(|s| s.len() == 26 * mix.frames()));
    let db = 10.0 * (residual / signal).log10();
    assert!(db < -60.0, "stems sum to the input within {db:.1} dB");
}

/// `separate`'s options for a quick run with the synthetic priors in `priors`.
fn quick_with(priors: &Path) -> [&str; 5] {
    [
        "--iterations",
        "2",
        "--quiet",
        "--priors",
        priors.to_str().unwrap(),
    ]
}

/// A batch: a folder (searched recursively) and a file; two tracks named alike get their own
/// folders, a file that cannot be decoded is reported and the others are separated, and the
/// command fails at the end naming it.
#[test]
fn a_batch_goes_on_past_a_bad_file_and_names_it() {
    let tmp = tempfile::tempdir().unwrap();
    let priors = copy_priors(tmp.path());
    let album = tmp.path().join("album");
    fs::create_dir_all(album.join("disc2")).unwrap();
    tone_wav(&album.join("song.wav"), 2, 1.0);
    tone_wav(&album.join("disc2/song.wav"), 1, 0.5);
    fs::write(album.join("disc2/broken.wav"), b"not audio at all").unwrap();
    fs::write(album.join("notes.txt"), b"not an audio file name").unwrap();
    let single = tmp.path().join("single.wav");
    tone_wav(&single, 2, 0.5);
    let out = tmp.path().join("out");
    let output = stemflow()
        .arg("separate")
        .arg(&album)
        .arg(&single)
        .arg("-o")
        .arg(&out)
        .args(quick_with(&priors))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a failed track fails the batch");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("stemflow: error:"))
        .collect();
    assert_eq!(errors.len(), 2, "{stderr}");
    assert!(errors[0].contains("broken.wav"), "{stderr}");
    assert!(
        errors[1].contains("1 of 4 tracks failed") && errors[1].contains("broken.wav"),
        "{stderr}"
    );
    // Sorted by path: disc2/broken, disc2/song, song, then the single file.
    for (track, channels) in [("song", 1), ("song-2", 2), ("single", 2)] {
        for stem in ["sine", "noise"] {
            let audio = read_all(out.join(track).join(format!("{stem}.wav"))).unwrap();
            assert_eq!(audio.channels.len(), channels, "{track}/{stem}");
        }
    }
    assert!(!out.join("broken").exists());
    let mut folders: Vec<_> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    folders.sort();
    assert_eq!(folders, ["single", "song", "song-2"]);
}

/// Without `-o`, a track's stems go to `stems/<track>/` under the current folder.
#[test]
fn without_an_output_folder_stems_go_to_stems_track() {
    let tmp = tempfile::tempdir().unwrap();
    let priors = copy_priors(tmp.path());
    let input = tmp.path().join("my song.wav");
    tone_wav(&input, 2, 0.5);
    let output = stemflow()
        .current_dir(tmp.path())
        .arg("separate")
        .arg(&input)
        .args(quick_with(&priors))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for stem in ["sine", "noise"] {
        assert!(tmp
            .path()
            .join("stems/my song")
            .join(format!("{stem}.wav"))
            .is_file());
    }
}

/// A folder with no audio in it is refused before anything is loaded.
#[test]
fn a_folder_without_audio_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("readme.txt"), b"no audio here").unwrap();
    let out = tmp.path().join("out");
    let output = stemflow()
        .arg("separate")
        .arg(tmp.path())
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert_clean_failure(&output, "no audio files", &out);
}

/// `separate` with the quick options, in `cwd`, with `args` before them.
fn run_in(cwd: &Path, args: &[&std::ffi::OsStr], priors: &Path) -> Output {
    stemflow()
        .current_dir(cwd)
        .arg("separate")
        .args(args)
        .args(quick_with(priors))
        .args(["--stems", "sine,noise"])
        .output()
        .unwrap()
}

/// Modification times of every stem under `dir`, by path.
fn stem_times(dir: &Path) -> Vec<(PathBuf, std::time::SystemTime)> {
    let mut found = Vec::new();
    for track in fs::read_dir(dir).unwrap() {
        let track = track.unwrap().path();
        for stem in fs::read_dir(&track).unwrap() {
            let stem = stem.unwrap().path();
            if stem.extension().is_some_and(|e| e == "wav") {
                found.push((stem.clone(), fs::metadata(&stem).unwrap().modified().unwrap()));
            }
        }
    }
    found.sort();
    found
}

/// The `--report` file as JSON.
fn report(path: &Path) -> serde_json::Value {
    serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap()
}

/// The status of each track in a report, by input file name.
fn statuses(report: &serde_json::Value) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = report["tracks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let input = t["input"].as_str().unwrap();
            let name = Path::new(input)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (name, t["status"].as_str().unwrap().to_string())
        })
        .collect();
    found.sort();
    found
}

/// Run again, a batch skips the tracks whose complete stems are there (and says so), separates
/// again a track whose stem was deleted or whose settings changed, and `--force` redoes all.
#[test]
fn a_batch_run_again_skips_complete_tracks_and_force_redoes_them() {
    let tmp = tempfile::tempdir().unwrap();
    let priors = copy_priors(tmp.path());
    let album = tmp.path().join("album");
    fs::create_dir_all(&album).unwrap();
    tone_wav(&album.join("a.wav"), 2, 0.5);
    tone_wav(&album.join("b.wav"), 1, 0.5);
    let out = tmp.path().join("out");
    let rep = tmp.path().join("report.json");
    let args = |extra: &[&str]| {
        let mut v: Vec<std::ffi::OsString> = vec![album.clone().into(), "-o".into(), out.clone().into()];
        v.push("--report".into());
        v.push(rep.clone().into());
        v.extend(extra.iter().map(|s| s.into()));
        v
    };
    let go = |extra: &[&str]| {
        let args = args(extra);
        let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        let output = run_in(tmp.path(), &refs, &priors);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        statuses(&report(&rep))
    };
    let both = |status: &str| {
        vec![
            ("a.wav".to_string(), status.to_string()),
            ("b.wav".to_string(), status.to_string()),
        ]
    };
    assert_eq!(go(&[]), both("separated"));
    let first = stem_times(&out);
    assert_eq!(first.len(), 4);
    assert_eq!(go(&[]), both("skipped"));
    assert_eq!(stem_times(&out), first, "skipped tracks are not rewritten");
    fs::remove_file(out.join("b/noise.wav")).unwrap();
    assert_eq!(
        go(&[]),
        vec![
            ("a.wav".into(), "skipped".into()),
            ("b.wav".into(), "separated".into())
        ]
    );
    // Another setting is another job: both are separated again, and then skipped under it.
    let other = ["--mask-exponent", "2"];
    assert_eq!(go(&other), both("separated"));
    assert_eq!(go(&other), both("skipped"));
    let mut force = other.to_vec();
    force.push("--force");
    assert_eq!(go(&force), both("separated"));
    // A changed input is separated again.
    tone_wav(&album.join("a.wav"), 2, 0.7);
    assert_eq!(
        go(&other),
        vec![
            ("a.wav".into(), "separated".into()),
            ("b.wav".into(), "skipped".into())
        ]
    );
}

/// The report names every track of a batch with its status, wall time and real-time factor, and
/// the failure's message; counts add up.
#[test]
fn the_report_lists_every_track_with_status_time_and_real_time_factor() {
    let tmp = tempfile::tempdir().unwrap();
    let priors = copy_priors(tmp.path());
    let good = tmp.path().join("good.wav");
    tone_wav(&good, 2, 0.5);
    let bad = tmp.path().join("bad.wav");
    fs::write(&bad, b"not audio").unwrap();
    let rep = tmp.path().join("reports/run.json");
    let output = run_in(
        tmp.path(),
        &[
            good.as_os_str(),
            bad.as_os_str(),
            "--report".as_ref(),
            rep.as_os_str(),
        ],
        &priors,
    );
    assert!(!output.status.success());
    let r = report(&rep);
    assert_eq!(
        (
            r["separated"].as_u64(),
            r["failed"].as_u64(),
            r["skipped"].as_u64()
        ),
        (Some(1), Some(1), Some(0))
    );
    let tracks = r["tracks"].as_array().unwrap();
    let good_line = tracks.iter().find(|t| t["status"] == "separated").unwrap();
    assert!(good_line["wall_seconds"].as_f64().unwrap() > 0.0);
    assert!(good_line["real_time_factor"].as_f64().unwrap() > 0.0);
    assert!((good_line["audio_seconds"].as_f64().unwrap() - 0.5).abs() < 1e-3);
    let bad_line = tracks.iter().find(|t| t["status"] == "failed").unwrap();
    assert!(
        bad_line["error"].as_str().unwrap().contains("bad.wav"),
        "{bad_line}"
    );
    assert!(tmp.path().join("stems/good/sine.wav").is_file());
}

/// `--shard K/N` over the same inputs: the shards are disjoint, cover every track, take every
/// N-th of the inputs sorted by path, and name colliding tracks as one run would.
#[test]
fn shards_split_a_batch_without_overlap() {
    let tmp = tempfile::tempdir().unwrap();
    let priors = copy_priors(tmp.path());
    let root = tmp.path().join("catalogue");
    for dir in ["x", "y"] {
        fs::create_dir_all(root.join(dir)).unwrap();
    }
    for name in ["x/song.wav", "y/song.wav", "x/a.wav", "y/b.wav", "y/c.wav"] {
        tone_wav(&root.join(name), 1, 0.3);
    }
    let out = tmp.path().join("out");
    let mut seen = Vec::new();
    for k in 1..=2 {
        let shard = format!("{k}/2");
        let rep = tmp.path().join(format!("r{k}.json"));
        let output = run_in(
            tmp.path(),
            &[
                root.as_os_str(),
                "-o".as_ref(),
                out.as_os_str(),
                "--shard".as_ref(),
                shard.as_ref(),
                "--report".as_ref(),
                rep.as_os_str(),
            ],
            &priors,
        );
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let r = report(&rep);
        assert_eq!(r["shard"], shard.as_str());
        for t in r["tracks"].as_array().unwrap() {
            seen.push((
                k,
                t["input"].as_str().unwrap().to_string(),
                t["output"].as_str().unwrap().to_string(),
            ));
        }
    }
    // Sorted: x/a, x/song, y/b, y/c, y/song; shard 1 takes the 1st, 3rd, 5th.
    let names: Vec<(usize, String)> = seen
        .iter()
        .map(|(k, input, _)| {
            (
                *k,
                input.strip_prefix(root.to_str().unwrap()).unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            (1, "/x/a.wav"),
            (1, "/y/b.wav"),
            (1, "/y/song.wav"),
            (2, "/x/song.wav"),
            (2, "/y/c.wav")
        ]
        .map(|(k, s)| (k, s.to_string()))
    );
    let mut folders: Vec<String> = seen
        .iter()
        .map(|(_, _, o)| o.rsplit('/').next().unwrap().to_string())
        .collect();
    folders.sort();
    assert_eq!(folders, ["a", "b", "c", "song", "song-2"]);
    assert_eq!(stem_times(&out).len(), 10);
}

/// `--json`: standard output is JSON lines only, with a line per track, progress, each track's
/// result and a summary.
#[test]
fn json_progress_is_one_object_per_line() {
    let tmp = tempfile::tempdir().unwrap();
    let priors = copy_priors(tmp.path());
    let a = tmp.path().join("a.wav");
    let b = tmp.path().join("b.wav");
    tone_wav(&a, 2, 0.5);
    tone_wav(&b, 1, 0.5);
    let output = stemflow()
        .current_dir(tmp.path())
        .arg("separate")
        .arg(&a)
        .arg(&b)
        .args(["--json", "--iterations", "2", "--stems", "sine,noise", "--priors"])
        .arg(&priors)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "track").count(), 2, "{stdout}");
    assert_eq!(kinds.iter().filter(|k| **k == "done").count(), 2, "{stdout}");
    assert!(kinds.contains(&"progress"), "{stdout}");
    let summary = events.last().unwrap();
    assert_eq!(summary["event"], "summary");
    assert_eq!(summary["separated"], 2);
    let done: Vec<&serde_json::Value> = events.iter().filter(|e| e["event"] == "done").collect();
    assert!(done.iter().all(|d| d["track"]["status"] == "separated"));
}

/// `--format flac` writes `<stem>.flac` (24-bit unless `--bits` says otherwise) whose sum is the
/// input; float FLAC and more than 8 FLAC channels are refused with the reason, nothing written.
#[test]
fn flac_stems_sum_to_the_input_and_impossible_formats_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let priors = copy_priors(tmp.path());
    let input = tmp.path().join("mix.wav");
    tone_wav(&input, 2, 0.6);
    let mix = read_all(&input).unwrap();
    for (bits, lsb) in [(None, 1.0 / 8_388_608.0), (Some("16"), 1.0 / 32_768.0)] {
        let out = tmp.path().join(format!("flac-{bits:?}"));
        let mut args: Vec<&std::ffi::OsStr> = vec![
            input.as_os_str(),
            "-o".as_ref(),
            out.as_os_str(),
            "--format".as_ref(),
            "flac".as_ref(),
        ];
        if let Some(bits) = bits {
            args.push("--bits".as_ref());
            args.push(bits.as_ref());
        }
        let output = run_in(tmp.path(), &args, &priors);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let stems: Vec<_> = ["sine", "noise"]
            .iter()
            .map(|s| read_all(out.join(format!("{s}.flac"))).unwrap())
            .collect();
        for (c, channel) in mix.channels.iter().enumerate() {
            for (i, &x) in channel.iter().enumerate() {
                let sum: f64 = stems.iter().map(|s| f64::from(s.channels[c][i])).sum();
                assert!(
                    (sum - f64::from(x)).abs() <= 3.0 * lsb + 1e-6,
                    "{bits:?}: frame {i}"
                );
            }
        }
    }
    let out = tmp.path().join("refused");
    let output = run_in(
        tmp.path(),
        &[
            input.as_os_str(),
            "-o".as_ref(),
            out.as_os_str(),
            "--format".as_ref(),
            "flac".as_ref(),
            "--bits".as_ref(),
            "32f".as_ref(),
        ],
        &priors,
    );
    assert_clean_failure(&output, "FLAC (it stores integers only)", &out);
    let wide = tmp.path().join("wide.wav");
    tone_wav(&wide, 10, 0.3);
    let output = run_in(
        tmp.path(),
        &[
            wide.as_os_str(),
            "-o".as_ref(),
            out.as_os_str(),
            "--format".as_ref(),
            "flac".as_ref(),
        ],
        &priors,
    );
    assert_clean_failure(&output, "1 to 8 channels", &out);
}

/// A disk that fills up while the stems are written: one error line naming the stem and the
/// reason, and nothing left in the output folder. The disk is a 256-KiB tmpfs where mounting is
/// allowed (as root); elsewhere a file-size limit (`ulimit -f`) makes the same write fail.
#[test]
fn a_full_disk_is_a_clear_error_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let priors = copy_priors(tmp.path());
    let input = good_mix_in(tmp.path());
    let disk = tmp.path().join("disk");
    fs::create_dir_all(&disk).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&disk)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let out = disk.join("out");
    let mut command = if mounted {
        let mut c = stemflow();
        c.arg("separate");
        c
    } else {
        // 64 KiB per file: the first stem's writes fail as on a full disk.
        let mut c = Command::new("sh");
        c.args(["-c", "ulimit -f 64 && exec \"$0\" separate \"$@\""])
            .arg(env!("CARGO_BIN_EXE_stemflow"));
        c
    };
    let output = command
        .arg(&input)
        .arg("-o")
        .arg(&out)
        .args(quick_with(&priors))
        .args(["--stems", "sine,noise"])
        .output()
        .unwrap();
    let reason = if mounted {
        "No space left on device"
    } else {
        "File too large"
    };
    assert_clean_failure(&output, reason, &out);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(".wav"), "the error names the stem: {stderr}");
    if mounted {
        assert!(Command::new("umount").arg(&disk).status().unwrap().success());
    }
}

/// `--separator sgld` with priors that have no `score` graph: one error line naming the prior and
/// the graph, nothing written; out-of-range SGLD settings name their option.
#[test]
fn sgld_needs_priors_with_a_score_graph_and_valid_settings() {
    let tmp = tempfile::tempdir().unwrap();
    let input = good_mix_in(tmp.path());
    let priors = copy_priors(tmp.path());
    let manifest = priors.join("sine").join("manifest.json");
    let mut json: serde_json::Value = serde_json::from_str(&fs::read_to_string(&manifest).unwrap()).unwrap();
    assert!(json["graphs"].as_object_mut().unwrap().remove("score").is_some());
    fs::write(&manifest, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    let out = tmp.path().join("out");
    let priors_arg = priors.to_str().unwrap();
    let output = separate(&input, &out, &["--priors", priors_arg, "--separator", "sgld"]);
    assert_clean_failure(&output, "prior `sine` has no `score` graph", &out);
    let output = separate(&input, &out, &["--separator", "sgld", "--eta", "0"]);
    assert_clean_failure(&output, "--eta", &out);
}

/// `--separator annealed` with a prior that has no `annealing` section: one error line naming the
/// prior and the section, nothing written; out-of-range annealed settings name their option.
#[test]
fn annealed_needs_priors_with_an_annealing_section_and_valid_settings() {
    let tmp = tempfile::tempdir().unwrap();
    let input = good_mix_in(tmp.path());
    let priors = copy_priors(tmp.path());
    let manifest = priors.join("noise").join("manifest.json");
    let mut json: serde_json::Value = serde_json::from_str(&fs::read_to_string(&manifest).unwrap()).unwrap();
    assert!(json.as_object_mut().unwrap().remove("annealing").is_some());
    fs::write(&manifest, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    let out = tmp.path().join("out");
    let priors_arg = priors.to_str().unwrap();
    let output = separate(
        &input,
        &out,
        &[
            "--priors",
            priors_arg,
            "--stems",
            "sine,noise",
            "--separator",
            "annealed",
        ],
    );
    assert_clean_failure(&output, "prior `noise` has no `annealing` section", &out);
    for (option, value) in [("--eta", "0"), ("--likelihood-scale", "0"), ("--steps", "0")] {
        let output = separate(
            &input,
            &out,
            &["--priors", priors_arg, "--separator", "annealed", option, value],
        );
        assert_clean_failure(&output, option, &out);
    }
}

/// Time-domain priors (`tests/fixtures/waveform_priors`, white Gaussians): with `--separator
/// sgld --mode waveform` the stems are the chains themselves, on every channel, and for a small σ
/// they sum to the mix's mono downmix; the default Adam search refuses them, as `--mode waveform`
/// refuses spectrogram priors (one error line, nothing written); `stemflow priors` shows their
/// domain and time multiple.
#[test]
fn waveform_priors_run_with_sgld_and_adam_refuses_them() {
    let tmp = tempfile::tempdir().unwrap();
    let input = good_mix_in(tmp.path());
    let priors = repo("tests/fixtures/waveform_priors");
    let priors_arg = priors.to_str().unwrap();
    let out = tmp.path().join("out");
    let stems = ["--priors", priors_arg, "--stems", "quiet,loud"];
    let output = separate(&input, &out, &stems);
    assert_clean_failure(&output, "prior `quiet` is a time-domain (waveform) prior", &out);
    let spectrogram = repo("tests/fixtures/priors");
    let waveform_mode = ["--separator", "sgld", "--mode", "waveform"];
    let output = separate(
        &input,
        &out,
        &[
            &["--priors", spectrogram.to_str().unwrap(), "--stems", "sine"][..],
            &waveform_mode,
        ]
        .concat(),
    );
    assert_clean_failure(&output, "--mode waveform", &out);

    let chains = ["--steps", "200", "--eta", "1e-5", "--sigma", "0.01"];
    let output = separate(&input, &out, &[&stems[..], &waveform_mode, &chains].concat());
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mix = read_all(&input).unwrap();
    let downmix: Vec<f32> = (0..mix.channels[0].len())
        .map(|i| mix.channels.iter().map(|c| c[i]).sum::<f32>() / mix.channels.len() as f32)
        .collect();
    let stems: Vec<_> = ["quiet", "loud"]
        .iter()
        .map(|s| read_all(out.join(format!("{s}.wav"))).unwrap())
        .collect();
    for stem in &stems {
        assert_eq!((stem.sample_rate, stem.channels.len()), (44_100, 2));
        assert_eq!(
            stem.channels[0], stem.channels[1],
            "one waveform on every channel"
        );
    }
    let residual: f64 = downmix
        .iter()
        .enumerate()
        .map(|(i, &x)| f64::from(stems.iter().map(|s| s.channels[0][i]).sum::<f32>() - x).powi(2))
        .sum();
    let energy: f64 = downmix.iter().map(|x| f64::from(*x).powi(2)).sum();
    let db = 10.0 * (residual / energy).log10();
    println!("the waveform stems sum to the downmix within {db:.1} dB");
    assert!(db < -20.0, "the chains' sum misses the downmix by {db:.1} dB");
    let energy_of = |s: &[f32]| s.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>();
    assert!(
        energy_of(&stems[0].channels[0]) < energy_of(&stems[1].channels[0]),
        "the quiet prior's stem is the quieter"
    );

    // σ 0.01 puts the chains' stiffest direction near 2·10⁴, so η 1.5e-4 overflows and half of it
    // holds: the run halves once, says so, and finishes; η 1 diverges at every halving and stops.
    let named = ["--priors", priors_arg, "--stems", "quiet,loud"];
    let too_large = ["--steps", "200", "--eta", "1.5e-4", "--sigma", "0.01"];
    let output = separate(&input, &out, &[&named[..], &waveform_mode, &too_large].concat());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("diverged at step size 1.5e-4; this frame and the next run at 7.5e-5"),
        "{stderr}"
    );
    fs::remove_dir_all(&out).unwrap();
    let hopeless = ["--steps", "200", "--eta", "1", "--sigma", "0.01"];
    let output = separate(&input, &out, &[&named[..], &waveform_mode, &hopeless].concat());
    assert_clean_failure(
        &output,
        "diverged at step size 1e0 and at every halving down to 1.25e-1",
        &out,
    );

    let listing = stemflow()
        .args(["priors", "--priors", priors_arg])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.status.success(), "{stdout}");
    assert!(
        stdout.contains("time-domain (waveform) prior, time_multiple=16"),
        "{stdout}"
    );
}

/// [`run_in`] with `--report rep`, which must succeed: the statuses of the report.
fn reported_run(cwd: &Path, args: &[&std::ffi::OsStr], rep: &Path, priors: &Path) -> Vec<(String, String)> {
    let mut all = args.to_vec();
    all.extend(["--report".as_ref(), rep.as_os_str()]);
    let output = run_in(cwd, &all, priors);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    statuses(&report(rep))
}

/// Every file under `dir`, relative to it, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, found: &mut Vec<String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() && !path.is_symlink() {
                walk(root, &path, found);
            } else {
                found.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut found = Vec::new();
    walk(dir, dir, &mut found);
    found.sort();
    found
}

/// Files named `...wav` and `..wav` would be tracks `..` and `.`: the parent of `-o` and `-o`
/// itself. Their stems go to folders of their own inside `-o`, and nothing lands beside it.
#[test]
fn dotted_file_names_stay_inside_the_output_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let priors = copy_priors(tmp.path());
    let album = tmp.path().join("album");
    fs::create_dir_all(&album).unwrap();
    for name in ["...wav", "..wav", "song.wav"] {
        tone_wav(&album.join(name), 1, 0.3);
    }
    let parent = tmp.path().join("parent");
    let out = parent.join("out");
    let output = run_in(
        tmp.path(),
        &[album.as_os_str(), "-o".as_ref(), out.as_os_str()],
        &priors,
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(files_under(&parent).len(), 9, "{:?}", files_under(&parent));
    for track in ["track", "track-2", "song"] {
        for file in ["sine.wav", "noise.wav", ".stemflow.json"] {
            assert!(
                out.join(track).join(file).is_file(),
                "{track}/{file}: {:?}",
                files_under(&parent)
            );
        }
    }
}

/// `cd album && stemflow separate .` run twice: the second run does not take the stems of the
/// first for new tracks, and a link cycle in the album lists nothing twice.
#[cfg(unix)]
#[test]
fn a_second_run_skips_its_own_output_and_link_cycles() {
    let tmp = tempfile::tempdir().unwrap();
    let priors = copy_priors(tmp.path());
    let album = tmp.path().join("album");
    fs::create_dir_all(album.join("disc")).unwrap();
    tone_wav(&album.join("song.wav"), 1, 0.3);
    tone_wav(&album.join("disc/other.wav"), 1, 0.3);
    std::os::unix::fs::symlink(&album, album.join("disc/loop")).unwrap();
    let rep = tmp.path().join("report.json");
    let go = || reported_run(&album, &[".".as_ref()], &rep, &priors);
    let both = |status: &str| {
        vec![
            ("other.wav".to_string(), status.to_string()),
            ("song.wav".to_string(), status.to_string()),
        ]
    };
    assert_eq!(go(), both("separated"));
    assert_eq!(go(), both("skipped"));
    // Stems whose record is gone (a run stopped while replacing them) are still not inputs.
    fs::remove_file(album.join("stems/song/.stemflow.json")).unwrap();
    let again = go();
    assert_eq!(again.len(), 2, "{again:?}");
    let mut folders: Vec<_> = fs::read_dir(album.join("stems"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    folders.sort();
    assert_eq!(folders, ["other", "song"]);
}

/// An input replaced by other audio of the same size and modification time is separated again.
#[test]
fn an_input_replaced_by_other_audio_of_the_same_size_and_time_is_separated_again() {
    let tmp = tempfile::tempdir().unwrap();
    let priors = copy_priors(tmp.path());
    let album = tmp.path().join("album");
    fs::create_dir_all(&album).unwrap();
    let song = album.join("song.wav");
    tone_wav(&song, 1, 0.3);
    tone_wav(&album.join("b.wav"), 1, 0.3);
    let out = tmp.path().join("out");
    let rep = tmp.path().join("report.json");
    let go = || {
        reported_run(
            tmp.path(),
            &[album.as_os_str(), "-o".as_ref(), out.as_os_str()],
            &rep,
            &priors,
        )
    };
    go();
    let when = fs::metadata(&song).unwrap().modified().unwrap();
    let mut bytes = fs::read(&song).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    fs::write(&song, &bytes).unwrap();
    fs::File::options()
        .write(true)
        .open(&song)
        .unwrap()
        .set_modified(when)
        .unwrap();
    assert_eq!(
        go(),
        vec![
            ("b.wav".to_string(), "skipped".to_string()),
            ("song.wav".to_string(), "separated".to_string())
        ]
    );
}

/// `--report` naming an input, a stem or a record is refused before anything is written, and
/// the file is untouched; an earlier report is replaced.
#[test]
fn a_report_that_would_replace_an_input_a_stem_or_a_record_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let priors = copy_priors(tmp.path());
    let song = tmp.path().join("song.wav");
    tone_wav(&song, 1, 0.3);
    let notes = tmp.path().join("notes.txt");
    fs::write(&notes, b"keep me").unwrap();
    let out = tmp.path().join("out");
    let rep = tmp.path().join("report.json");
    let go = |report: &Path| {
        run_in(
            tmp.path(),
            &[
                song.as_os_str(),
                "-o".as_ref(),
                out.as_os_str(),
                "--report".as_ref(),
                report.as_os_str(),
            ],
            &priors,
        )
    };
    assert!(go(&rep).status.success());
    let record = out.join(".stemflow.json");
    for target in [song.clone(), out.join("sine.wav"), record.clone(), notes.clone()] {
        let before = fs::read(&target).unwrap();
        let output = go(&target);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{}: {stderr}", target.display());
        assert!(
            stderr.contains("--report") && stderr.contains("expected a new file"),
            "{stderr}"
        );
        assert_eq!(
            fs::read(&target).unwrap(),
            before,
            "{} is untouched",
            target.display()
        );
    }
    let fresh_stem = tmp.path().join("elsewhere/bass.flac");
    assert!(!go(&fresh_stem).status.success());
    assert!(!fresh_stem.exists());
    let output = go(&rep);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A panic while one track is separated fails that track only: the others are separated, the
/// report says which failed and why, and the summary is printed.
#[test]
fn a_panic_in_one_track_fails_only_that_track() {
    let tmp = tempfile::tempdir().unwrap();
    let priors = copy_priors(tmp.path());
    let album = tmp.path().join("album");
    fs::create_dir_all(&album).unwrap();
    for name in ["a.wav", "b.wav"] {
        tone_wav(&album.join(name), 1, 0.3);
    }
    let out = tmp.path().join("out");
    let rep = tmp.path().join("report.json");
    let output = stemflow()
        .env("STEMFLOW_FAULT", "frame-panic")
        .arg("separate")
        .arg(&album)
        .arg("-o")
        .arg(&out)
        .arg("--report")
        .arg(&rep)
        .args(quick_with(&priors))
        .args(["--stems", "sine,noise"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("b.wav: internal error"), "{stderr}");
    assert!(stderr.contains("fault injected by a test"), "{stderr}");
    assert!(stderr.contains("1 of 2 tracks failed"), "{stderr}");
    let r = report(&rep);
    assert_eq!(
        statuses(&r),
        vec![
            ("a.wav".to_string(), "separated".to_string()),
            ("b.wav".to_string(), "failed".to_string())
        ]
    );
    let failed = r["tracks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["status"] == "failed")
        .unwrap();
    assert!(
        failed["error"].as_str().unwrap().contains("frame-panic"),
        "{failed}"
    );
    assert!(out.join("a/sine.wav").is_file());
    assert!(!out.join("b").exists(), "the failed track leaves no folder");
}

/// Two runs into one output folder at once: the second does not touch a track the first is
/// writing, and its error names the first run.
#[cfg(unix)]
#[test]
fn a_second_run_into_the_same_output_folder_names_the_first() {
    let tmp = tempfile::tempdir().unwrap();
    let priors = copy_priors(tmp.path());
    let input = good_mix_in(tmp.path());
    let out = tmp.path().join("out");
    let mut first = Some(
        stemflow()
            .arg("separate")
            .arg(&input)
            .arg("-o")
            .arg(&out)
            .args(["--priors", priors.to_str().unwrap()])
            .args(["--iterations", "100000", "--quiet"])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Ends the first run however this test ends.
    let guard = KillOnDrop(&mut first);
    let started = std::time::Instant::now();
    while !out.join(".stemflow.lock").exists() {
        assert!(started.elapsed().as_secs() < 60, "the first run took no lock");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let second = separate(&input, &out, &["--priors", priors.to_str().unwrap()]);
    drop(guard);
    let first = first.take().unwrap();
    let first_id = first.id();
    // SAFETY: sending SIGINT to the child we started.
    unsafe {
        libc::kill(first.id() as libc::pid_t, libc::SIGINT);
    }
    let first = first.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "{stderr}");
    let pid = format!("(process {first_id}");
    assert!(
        stderr.contains("another Stemflow run") && stderr.contains(&pid),
        "{stderr}"
    );
    assert_eq!(first.status.code(), Some(130));
    assert!(!out.exists(), "nothing left: {:?}", files_under(tmp.path()));
}

/// Kills the child it holds when dropped while still holding it (a test that fails early leaves
/// no run behind).
#[cfg(unix)]
struct KillOnDrop<'a>(&'a mut Option<std::process::Child>);

#[cfg(unix)]
impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(mut child) = self.0.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// `separate` with no input names the missing argument.
#[test]
fn no_input_names_the_missing_argument() {
    let output = stemflow().arg("separate").output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not provided: <INPUT>"), "{stderr}");
}

/// `stemflow priors --json` is one JSON document, a broken prior in it with its error.
#[test]
fn priors_json_is_one_json_document() {
    let tmp = tempfile::tempdir().unwrap();
    let priors = copy_priors(tmp.path());
    fs::remove_file(priors.join("noise/grad.onnx")).unwrap();
    let output = stemflow()
        .args(["priors", "--json", "--priors"])
        .arg(&priors)
        .output()
        .unwrap();
    assert!(output.status.success());
    let document: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&output.stdout)));
    let listed = document["priors"].as_array().unwrap();
    let sine = listed.iter().find(|p| p["stem"] == "sine").unwrap();
    assert_eq!(sine["status"], "ok");
    assert_eq!(sine["manifest"]["stem"], "sine");
    let noise = listed.iter().find(|p| p["stem"] == "noise").unwrap();
    assert_eq!(noise["status"], "broken");
    assert!(noise["error"].as_str().unwrap().contains("grad.onnx"), "{noise}");
    assert!(document["searched"].as_array().is_some_and(|s| !s.is_empty()));
}

/// Ctrl-C in a batch after its first track was written says what was written, and leaves that
/// track's stems and record.
#[cfg(unix)]
#[test]
fn a_batch_stopped_after_a_written_track_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let priors = copy_priors(tmp.path());
    let album = tmp.path().join("album");
    fs::create_dir_all(&album).unwrap();
    tone_wav(&album.join("a.wav"), 1, 0.3);
    // Long enough that the stop, sent as soon as its folder is locked, finds it in work.
    tone_wav(&album.join("b.wav"), 1, 60.0);
    let out = tmp.path().join("out");
    let mut child = Some(
        stemflow()
            .arg("separate")
            .arg(&album)
            .arg("-o")
            .arg(&out)
            .args(quick_with(&priors))
            .args(["--stems", "sine,noise"])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let guard = KillOnDrop(&mut child);
    let started = std::time::Instant::now();
    while !out.join("b/.stemflow.lock").exists() {
        assert!(started.elapsed().as_secs() < 60, "b was never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    drop(guard);
    let child = child.take().unwrap();
    // SAFETY: sending SIGINT to the child we started.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(!stderr.contains("nothing was written"), "{stderr}");
    assert!(stderr.contains("1 of 2 tracks were separated"), "{stderr}");
    assert!(out.join("a/sine.wav").is_file() && out.join("a/.stemflow.json").is_file());
}

/// `tone_wav` as a stream writes it: the RIFF and data lengths are 0xFFFFFFFF, so the length is
/// known only at the end of the audio.
fn streaming_tone_wav(path: &Path, channels: u16, seconds: f32) {
    tone_wav(path, channels, seconds);
    let mut bytes = fs::read(path).unwrap();
    bytes[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    bytes[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
    fs::write(path, bytes).unwrap();
}

/// The `--json` events of a run, one per line, each parsed.
fn json_events(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The percents of track `index`'s progress lines, in order (`None` where a line has none).
fn track_percents(events: &[serde_json::Value], index: u64) -> Vec<Option<u64>> {
    events
        .iter()
        .filter(|e| e["event"] == "progress" && e["index"] == index)
        .map(|e| e["percent"].as_u64())
        .collect()
}

/// Asserts that `percents` never goes back and says 100 at most once, in its last line.
fn assert_rising(percents: &[Option<u64>], stdout: &str) {
    let known: Vec<u64> = percents.iter().flatten().copied().collect();
    assert!(
        known.windows(2).all(|w| w[0] <= w[1]),
        "progress went back: {known:?}\n{stdout}"
    );
    let hundreds = percents.iter().filter(|p| **p == Some(100)).count();
    assert!(
        hundreds <= 1 && (hundreds == 0 || percents.last() == Some(&Some(100))),
        "100 before the end: {percents:?}\n{stdout}"
    );
}

/// Progress over several frames, for a file whose header gives its length and for one streamed
/// (length unknown until its end): the percent never goes back, and says 100 once, as the last
/// progress line of a track, when its stems are written.
#[test]
fn json_progress_only_rises_and_says_100_when_the_track_is_complete() {
    let tmp = tempfile::tempdir().unwrap();
    let priors = copy_priors(tmp.path());
    let known = tmp.path().join("known.wav");
    let streamed = tmp.path().join("streamed.wav");
    tone_wav(&known, 1, 10.0);
    streaming_tone_wav(&streamed, 1, 10.0);
    let output = stemflow()
        .current_dir(tmp.path())
        .arg("separate")
        .arg(&known)
        .arg(&streamed)
        .args(["--json", "--iterations", "4", "--stems", "sine,noise", "--priors"])
        .arg(&priors)
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let events = json_events(&stdout);
    for index in [1, 2] {
        let percents = track_percents(&events, index);
        assert_rising(&percents, &stdout);
        assert_eq!(percents.last(), Some(&Some(100)), "track {index}: {stdout}");
    }
}

/// A track stopped by Ctrl-C after a few frames: its progress never went back and never said 100.
#[test]
fn json_progress_of_a_stopped_track_never_says_100() {
    use std::io::BufRead;
    let tmp = tempfile::tempdir().unwrap();
    let priors = copy_priors(tmp.path());
    let input = tmp.path().join("long.wav");
    tone_wav(&input, 1, 60.0);
    let mut child = Some(
        stemflow()
            .current_dir(tmp.path())
            .arg("separate")
            .arg(&input)
            .args(["--json", "--iterations", "4", "--stems", "sine,noise", "--priors"])
            .arg(&priors)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let guard = KillOnDrop(&mut child);
    let stdout = guard.0.as_mut().unwrap().stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    let mut seen = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        let event: serde_json::Value = serde_json::from_str(&line).unwrap();
        if event["event"] == "progress" && event["frame"].as_u64().unwrap_or(0) >= 2 {
            break;
        }
    }
    drop(guard);
    let child = child.take().unwrap();
    // SAFETY: sending SIGINT to the child we started.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    for line in lines {
        seen.push_str(&line.unwrap());
        seen.push('\n');
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    let percents = track_percents(&json_events(&seen), 1);
    assert!(percents.len() >= 2, "{seen}");
    assert_rising(&percents, &seen);
    assert!(!percents.contains(&Some(100)), "a stopped track said 100: {seen}");
}

/// A small seeded generator (xorshift64*), so a failing fuzz case is named by its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True `percent` times in a hundred.
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// What file and folder names are made of: unicode (composed and not, right-to-left override,
/// emoji), dots, spaces, control characters, shell and URL characters, names alike but for case.
const NAME_PIECES: &[&str] = &[
    "a",
    "Song",
    "song",
    "SONG",
    "Ä",
    "ß",
    "日本語",
    "🎵",
    " ",
    ".",
    "..",
    "-",
    "_",
    "x y",
    "\u{202e}",
    "\t",
    "\n",
    "İ",
    "e\u{301}",
    "#",
    "%20",
    "~",
    "$HOME",
    "*",
    "?",
    "'",
    "\"",
    "\\",
];

/// A file or folder name (no extension): one to four pieces, now and then made long (about 200 to
/// 240 bytes, within the 255 a file system allows with the extension).
fn fuzz_name(rng: &mut Rng) -> String {
    let mut name = String::new();
    for _ in 0..1 + rng.below(4) {
        name.push_str(NAME_PIECES[rng.below(NAME_PIECES.len())]);
    }
    if rng.chance(15) {
        while name.len() < 200 {
            name.push_str(NAME_PIECES[rng.below(NAME_PIECES.len())]);
        }
        while name.len() > 240 {
            name.pop();
        }
    }
    name
}

/// Every file and link under `dir`, not following links and leaving `skip` out, with its content
/// (a link's target): what a run must leave as it was.
fn tree_snapshot(dir: &Path, skip: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut found = std::collections::BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path == skip {
                continue;
            }
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.is_symlink() {
                let target = fs::read_link(&path).unwrap();
                found.insert(path, target.into_os_string().into_encoded_bytes());
            } else if meta.is_dir() {
                found.insert(path.clone(), Vec::new());
                todo.push(path);
            } else {
                found.insert(path.clone(), fs::read(&path).unwrap());
            }
        }
    }
    found
}

/// One fuzz case's folder: the input tree, where the output goes and how the command is given.
struct FuzzCase {
    /// The output folder the run writes.
    out: PathBuf,
    /// The folder the command runs in.
    cwd: PathBuf,
    /// The arguments before the common ones.
    args: Vec<std::ffi::OsString>,
    /// Audio files made (links to them are not new tracks).
    tracks: usize,
}

/// Makes the input tree of seed `seed` under `tmp`: nested folders and 2–5 short WAVs under
/// generated names, links to files and to folders above them (cycles), and an output folder
/// outside the inputs, inside them, or the default `stems` of a run in the input folder.
fn fuzz_case(tmp: &Path, seed: u64) -> FuzzCase {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let root = tmp.join("in");
    fs::create_dir_all(&root).unwrap();
    let mut dirs = vec![root.clone()];
    for _ in 0..1 + rng.below(3) {
        let mut name = fuzz_name(&mut rng);
        if name == "." || name == ".." {
            name.insert(0, 'd');
        }
        let dir = dirs[rng.below(dirs.len())].join(name);
        if fs::create_dir(&dir).is_ok() {
            dirs.push(dir);
        }
    }
    let mut files = Vec::new();
    while files.len() < 2 + rng.below(4) {
        let ext = [".wav", ".WAV", ".wave", ".Wav"][rng.below(4)];
        let path = dirs[rng.below(dirs.len())].join(fuzz_name(&mut rng) + ext);
        if !path.exists() {
            tone_wav(&path, 1, 0.05 + 0.05 * rng.below(3) as f32);
            files.push(path);
        }
    }
    #[cfg(unix)]
    {
        let at = dirs[rng.below(dirs.len())].clone();
        let _ = std::os::unix::fs::symlink(
            &dirs[rng.below(dirs.len())],
            at.join(fuzz_name(&mut rng) + " loop"),
        );
        let at = dirs[rng.below(dirs.len())].join(fuzz_name(&mut rng) + " link.wav");
        let _ = std::os::unix::fs::symlink(&files[rng.below(files.len())], at);
    }
    let (out, cwd, mut args): (PathBuf, PathBuf, Vec<std::ffi::OsString>) = match rng.below(3) {
        0 => (tmp.join("out"), tmp.to_path_buf(), vec![root.clone().into()]),
        1 => {
            let out = dirs[rng.below(dirs.len())].join(fuzz_name(&mut rng).replace('.', "o") + " out");
            (out, tmp.to_path_buf(), vec![root.clone().into()])
        }
        _ => (root.join("stems"), root.clone(), vec![".".into()]),
    };
    if out != root.join("stems") {
        args.extend(["-o".into(), out.clone().into()]);
    }
    FuzzCase {
        out,
        cwd,
        args,
        tracks: files.len(),
    }
}

/// Runs `case` with `--report rep` (and `extra`), as a child process.
fn fuzz_run(case: &FuzzCase, priors: &Path, rep: &Path, extra: &[&str]) -> std::process::Child {
    stemflow()
        .current_dir(&case.cwd)
        .arg("separate")
        .args(&case.args)
        .args([
            "--iterations",
            "1",
            "--quiet",
            "--stems",
            "sine,noise",
            "--report",
        ])
        .arg(rep)
        .arg("--priors")
        .arg(priors)
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Checks the output folder of `case`: one folder per track directly inside it, each a safe
/// single name holding the stems and the record and nothing else.
fn assert_fuzz_output(case: &FuzzCase, seed: u64) {
    let mut folders = 0;
    for entry in fs::read_dir(&case.out).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        assert!(
            entry.file_type().unwrap().is_dir()
                && !name.starts_with('.')
                && !name.chars().any(char::is_control)
                && !name.contains('/'),
            "seed {seed}: {name:?} in {:?}",
            files_under(&case.out)
        );
        let mut inside: Vec<String> = fs::read_dir(entry.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n != ".stemflow.lock")
            .collect();
        inside.sort();
        assert_eq!(
            inside,
            [".stemflow.json", "noise.wav", "sine.wav"],
            "seed {seed}: {name:?}"
        );
        folders += 1;
    }
    assert_eq!(folders, case.tracks, "seed {seed}: {:?}", files_under(&case.out));
}

/// Waits for `child`; its report's status and error of each track, in the report's order (sorted
/// by path), after checking that nothing panicked.
fn fuzz_finish(child: std::process::Child, rep: &Path, seed: u64) -> (Output, Vec<(String, String)>) {
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panic"), "seed {seed}: {stderr}");
    let tracks = report(rep)["tracks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let status = t["status"].as_str().unwrap().to_string();
            (status, t["error"].as_str().unwrap_or("").to_string())
        })
        .collect();
    (output, tracks)
}

/// The statuses of `tracks`.
fn only_statuses(tracks: &[(String, String)]) -> Vec<&str> {
    tracks.iter().map(|(status, _)| status.as_str()).collect()
}

/// A bounded fuzz of file names and folder shapes: for each seed, a tree of generated names
/// (unicode, dots, spaces, control characters, long names, names alike but for case), links to
/// files and cycles of folder links, and an output folder outside the inputs, nested in them or
/// the default. Every track's stems land in a single-name folder directly inside the output
/// folder, no input or other file changes, a second run skips every track and finds none of its
/// output, two runs at once share the tracks (a track either run did not write names the other),
/// and nothing panics. `STEMFLOW_FUZZ_SEEDS=N` tries N seeds instead of the default few.
#[cfg(unix)]
#[test]
fn fuzzed_names_and_folder_shapes_stay_inside_the_output_folder() {
    let seeds: u64 = std::env::var("STEMFLOW_FUZZ_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    let tmp = tempfile::tempdir().unwrap();
    let priors = copy_priors(tmp.path());
    for seed in 0..seeds {
        let dir = tmp.path().join(format!("case{seed}"));
        fs::create_dir_all(&dir).unwrap();
        let case = fuzz_case(&dir, seed);
        let before = tree_snapshot(&dir, &case.out);
        let rep = tmp.path().join(format!("report{seed}.json"));
        let (output, statuses) = fuzz_finish(fuzz_run(&case, &priors, &rep, &[]), &rep, seed);
        assert!(
            output.status.success(),
            "seed {seed}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            only_statuses(&statuses),
            vec!["separated"; case.tracks],
            "seed {seed}"
        );
        assert_fuzz_output(&case, seed);
        assert_eq!(
            tree_snapshot(&dir, &case.out),
            before,
            "seed {seed}: a file outside -o changed"
        );
        let stems = files_under(&case.out);
        let (output, statuses) = fuzz_finish(fuzz_run(&case, &priors, &rep, &[]), &rep, seed);
        assert!(output.status.success(), "seed {seed}");
        assert_eq!(
            only_statuses(&statuses),
            vec!["skipped"; case.tracks],
            "seed {seed}"
        );
        assert_eq!(files_under(&case.out), stems, "seed {seed}");
        if seed % 2 == 0 {
            let rep2 = tmp.path().join(format!("report{seed}-2.json"));
            let first = fuzz_run(&case, &priors, &rep, &["--force"]);
            let second = fuzz_run(&case, &priors, &rep2, &["--force"]);
            let (_, one) = fuzz_finish(first, &rep, seed);
            let (_, two) = fuzz_finish(second, &rep2, seed);
            assert_eq!((one.len(), two.len()), (case.tracks, case.tracks), "seed {seed}");
            for (a, b) in one.iter().zip(&two) {
                assert!(
                    a.0 == "separated" || b.0 == "separated",
                    "seed {seed}: {a:?} {b:?}"
                );
                for (status, error) in [a, b] {
                    assert!(
                        status == "separated" || error.contains("another Stemflow run"),
                        "seed {seed}: {status}: {error}"
                    );
                }
            }
            assert_fuzz_output(&case, seed);
            assert_eq!(tree_snapshot(&dir, &case.out), before, "seed {seed}");
        }
    }
}

/// A fixture of `tests/fixtures/` (made by `make_compressed_fixtures.sh`).
fn compressed_fixture(name: &str) -> PathBuf {
    repo("tests/fixtures").join(name)
}

/// An MP3 with one damaged frame is separated with a warning naming where, in the terminal and in
/// the report; its stems keep the input's length. A file of mostly damaged frames fails as corrupt
/// and leaves nothing.
#[test]
fn a_damaged_mp3_frame_is_a_warning_and_a_ruined_mp3_an_error() {
    let scratch = tempfile::tempdir().unwrap();
    let (out, rep) = (scratch.path().join("out"), scratch.path().join("report.json"));
    let output = stemflow()
        .arg("separate")
        .args(["damaged.mp3", "ruined.mp3"].map(compressed_fixture))
        .arg("-o")
        .arg(&out)
        .arg("--report")
        .arg(&rep)
        .args(quick_with(&copy_priors(scratch.path())))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let warning = stderr
        .lines()
        .find(|l| l.starts_with("stemflow: warning:") && l.contains("damaged.mp3"))
        .unwrap_or_else(|| panic!("no warning naming damaged.mp3 in {stderr}"));
    assert!(
        warning.contains("1 damaged packet (the first at 0.471 s)"),
        "{warning}"
    );
    assert!(
        stderr.contains("ruined.mp3") && stderr.contains("packets could not be decoded"),
        "{stderr}"
    );
    let sine = read_all(out.join("damaged/sine.wav")).unwrap();
    assert_eq!(sine.frames(), 44_100);
    assert!(!out.join("ruined").exists());
    let r = report(&rep);
    let tracks = r["tracks"].as_array().unwrap();
    let damaged = tracks.iter().find(|t| t["status"] == "separated").unwrap();
    assert!(
        damaged["warnings"][0]
            .as_str()
            .unwrap()
            .contains("replaced by 0.026 s of silence"),
        "{damaged}"
    );
    let ruined = tracks.iter().find(|t| t["status"] == "failed").unwrap();
    assert!(ruined["error"].as_str().unwrap().contains("corrupt"), "{ruined}");
}

/// An M4A (AAC) input's stems have the input's length and timing: the encoder's priming and
/// padding are left out as its edit list says.
#[test]
fn an_m4a_input_gives_stems_of_its_length() {
    let tmp = tempfile::tempdir().unwrap();
    let priors = copy_priors(tmp.path());
    let out = tmp.path().join("out");
    separate_into_sine_and_noise(&compressed_fixture("burst.m4a"), &out, &priors);
    let mut sum = vec![0.0f32; 44_100];
    for stem in ["sine", "noise"] {
        let audio = read_all(out.join(format!("{stem}.wav"))).unwrap();
        assert_eq!(audio.frames(), 44_100, "{stem}");
        sum.iter_mut().zip(&audio.channels[0]).for_each(|(s, x)| *s += x);
    }
    let peak = sum.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let onset = sum.iter().position(|x| x.abs() > 0.05);
    assert!(
        onset.is_some_and(|at| (22_050 - 64..=22_050 + 8).contains(&at)),
        "the burst starts at 22050, found {onset:?} (peak {peak})"
    );
}

/// An input whose name holds a line break and an escape character is named on one error line,
/// its control characters escaped, and the batch's summary line stays one line too.
#[cfg(unix)]
#[test]
fn control_characters_in_a_name_keep_each_message_on_one_line() {
    let scratch = tempfile::tempdir().unwrap();
    let album = scratch.path().join("album");
    fs::create_dir_all(&album).unwrap();
    fs::write(album.join("bad\nname\u{1b}[2J.wav"), b"not audio at all").unwrap();
    tone_wav(&album.join("good.wav"), 1, 0.3);
    let output = stemflow()
        .arg("separate")
        .arg(&album)
        .args(["--stems", "sine,noise", "-o"])
        .arg(scratch.path().join("out"))
        .args(quick_with(&copy_priors(scratch.path())))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        2,
        "one error for the track, one for the batch: {stderr}"
    );
    for line in lines {
        assert!(line.starts_with("stemflow: error:"), "{line}");
        assert!(line.contains("bad\\nname\\u{1b}[2J.wav"), "{line}");
    }
}
