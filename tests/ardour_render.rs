//! The plugin in a real DAW: Ardour 7 (Debian's `ardour`), driven headless by its Lua session
//! tool (`ardour7-lua`, dummy audio backend) and its export tool (`ardour7-export`, the export
//! path of Ardour's Export dialog). A session holds one stereo track playing an excerpt of the
//! demo mix through Stemflow (VST3); its offline renders must equal `stemflow separate` on the
//! same file:
//!
//! - an export with each stem soloed equals that stem of the command line (both aligned by
//!   Ardour's latency compensation, so sample for sample);
//! - an export with no stem soloed (the main output at unity) equals the input;
//! - an export with a stem soloed and its gain automated follows the automation lane;
//! - a track bounce with processing (`Track:bounce_range`) with a stem soloed equals that stem.
//!
//! It needs the built bundles: `cargo xtask test` builds them and runs this test with
//! `STEMFLOW_BUNDLE_DIR` pointing at them (the VST3 bundle and the command line inside the CLAP
//! folder come from the same build). Ardour runs with a private `HOME`, so the user's plugin
//! folders, caches and settings are neither read nor changed. Ardour 7.3 headless sometimes
//! aborts with heap corruption, also without any plugin: a run that printed its marker (the
//! export's "Done", the bounce's and the session's own) counts; one that did not is tried again
//! from a new session, up to [`ARDOUR_TRIES`] times.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Seconds of the demo mix the session plays (three frames of the command line).
const EXCERPT_SECONDS: f64 = 12.0;
/// How often one Ardour run is tried before the test fails.
const ARDOUR_TRIES: usize = 5;
/// The most a render may differ from what it must equal, in dB relative to it.
const MATCH_DB: f64 = -60.0;
/// The most the automated render may differ from the stem times the automation lane (the
/// plugin's gain smoother lags a moving value by a few milliseconds).
const AUTOMATION_DB: f64 = -40.0;
const RATE: u32 = 44_100;
const STEMS: [&str; 4] = ["bass", "drums", "guitar", "piano"];

/// A stereo signal, one vector per channel.
type Stereo = [Vec<f32>; 2];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn bundle_dir() -> PathBuf {
    std::env::var_os("STEMFLOW_BUNDLE_DIR")
        .map(PathBuf::from)
        .expect("STEMFLOW_BUNDLE_DIR names the folder of the built bundles (`cargo xtask test` sets it)")
}

fn read_wav(path: &Path) -> Stereo {
    let mut reader = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let spec = reader.spec();
    let samples: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader.samples::<f32>().map(Result::unwrap).collect(),
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
            reader
                .samples::<i32>()
                .map(|s| s.unwrap() as f32 * scale)
                .collect()
        }
    };
    let ch = spec.channels as usize;
    let frames = samples.len() / ch;
    let channel = |c: usize| (0..frames).map(|i| samples[i * ch + c.min(ch - 1)]).collect();
    [channel(0), channel(1)]
}

fn write_wav(path: &Path, signal: &Stereo) {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: RATE,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut writer = hound::WavWriter::create(path, spec).unwrap();
    for (left, right) in signal[0].iter().zip(&signal[1]) {
        writer.write_sample(*left).unwrap();
        writer.write_sample(*right).unwrap();
    }
    writer.finalize().unwrap();
}

/// Energy of `got − want` relative to `want`'s, in dB, over `want`'s length (`got` must be at
/// least as long); −∞ when they are identical.
fn difference_db(got: &Stereo, want: &Stereo) -> f64 {
    let (mut err, mut energy) = (0.0f64, 0.0f64);
    for c in 0..2 {
        assert!(
            got[c].len() >= want[c].len(),
            "{} samples rendered, {} expected",
            got[c].len(),
            want[c].len()
        );
        for (g, w) in got[c].iter().zip(&want[c]) {
            err += f64::from(g - w).powi(2);
            energy += f64::from(*w).powi(2);
        }
    }
    if err == 0.0 {
        return f64::NEG_INFINITY;
    }
    10.0 * (err / energy.max(1e-30)).log10()
}

/// Runs one Ardour `command`; an error (with Ardour's output) unless its output contains
/// `marker`, which it prints once its work is done.
fn run_ardour(mut command: Command, marker: &str, what: &str) -> Result<Output, String> {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run Ardour: {e}"));
    let text = String::from_utf8_lossy(&output.stdout);
    if text.contains(marker) {
        return Ok(output);
    }
    Err(format!(
        "{what}: Ardour ended ({}) before \"{marker}\"\n{}\n{}",
        output.status,
        text,
        String::from_utf8_lossy(&output.stderr)
    ))
}

/// `attempt()`, tried up to [`ARDOUR_TRIES`] times from the start (a new session each time: a
/// session Ardour crashed on may keep what made it crash).
fn tried<T>(what: &str, mut attempt: impl FnMut() -> Result<T, String>) -> T {
    let mut errors = Vec::new();
    for _ in 0..ARDOUR_TRIES {
        match attempt() {
            Ok(value) => return value,
            Err(error) => {
                eprintln!("{what}: {error}\ntrying again");
                errors.push(error);
            }
        }
    }
    panic!("{what}: failed {ARDOUR_TRIES} times:\n{}", errors.join("\n"));
}

/// A private home for Ardour with the VST3 bundle installed and scanned.
struct ArdourHome {
    home: tempfile::TempDir,
}

impl ArdourHome {
    fn new(vst3_bundle: &Path) -> Self {
        let home = tempfile::tempdir().unwrap();
        let plugins = home.path().join(".vst3");
        std::fs::create_dir_all(&plugins).unwrap();
        let installed = plugins.join("Stemflow.vst3");
        let status = Command::new("cp")
            .arg("-a")
            .arg(vst3_bundle)
            .arg(&installed)
            .status()
            .unwrap();
        assert!(status.success(), "copying the VST3 bundle");
        // Ardour reads its plugin cache only when the module is older than it.
        let module = installed.join("Contents/x86_64-linux/Stemflow.so");
        let status = Command::new("touch")
            .args(["-d", "-1 minute"])
            .arg(&module)
            .status()
            .unwrap();
        assert!(status.success(), "dating the module");
        let ardour_home = ArdourHome { home };
        let output = ardour_home
            .command("/usr/lib/ardour7/ardour-vst3-scanner")
            .env("LD_LIBRARY_PATH", "/usr/lib/ardour7")
            .arg("-f")
            .arg(&installed)
            .output()
            .unwrap();
        let log =
            String::from_utf8_lossy(&output.stderr).into_owned() + &String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && log.contains("Found Plugin: Stemflow"),
            "Ardour's VST3 scanner did not list Stemflow:\n{log}"
        );
        ardour_home
    }

    /// `program` with this home and nothing of the user's or the build's set-up.
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command
            .env("HOME", self.home.path())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_CACHE_HOME")
            .env_remove("XDG_DATA_HOME")
            .env_remove("STEMFLOW_DATA_DIR")
            .env_remove("STEMFLOW_FAULT");
        command
    }

    /// A saved session playing `input` (a WAV of `frames` samples) on a track through Stemflow,
    /// with `solo` (a parameter label) on and `automate` (see make_session.lua) if given.
    fn session(
        &self,
        dir: &Path,
        input: &Path,
        frames: usize,
        solo: &str,
        automate: &str,
    ) -> Result<PathBuf, String> {
        let name = format!("{solo} {}", automate.split(';').next().unwrap_or(""));
        let session = dir.join(format!("session-{}", name.trim().replace(' ', "-")));
        let _ = std::fs::remove_dir_all(&session);
        let mut command = self.command("ardour7-lua");
        command
            .arg(repo().join("tests/ardour/make_session.lua"))
            .env("SESS_DIR", &session)
            .env("SOLO", solo)
            .env("AUTOMATE", automate);
        run_ardour(command, "SESSION-SAVED", "making the session")?;
        add_region(&session, input, frames);
        Ok(session)
    }

    /// The session's export (its session range, master bus, 32-bit float).
    fn export(&self, session: &Path) -> Result<Stereo, String> {
        let out = session.join("export.wav");
        let mut command = self.command("ardour7-export");
        command
            .args(["-b", "float", "-o"])
            .arg(&out)
            .arg(session)
            .arg("s");
        run_ardour(command, "* Done.", "exporting")?;
        Ok(read_wav(&out))
    }

    /// The track bounced through its plugin, `frames` samples from the start.
    fn bounce(&self, session: &Path, frames: usize) -> Result<Stereo, String> {
        let audio = audio_files(session);
        let mut command = self.command("ardour7-lua");
        command
            .arg(repo().join("tests/ardour/bounce.lua"))
            .env("SESS_DIR", session)
            .env("LEN", frames.to_string());
        run_ardour(command, "BOUNCE-DONE", "bouncing")?;
        let [left, _] = read_wav(&audio.join("bounce%L.wav"));
        let [right, _] = read_wav(&audio.join("bounce%R.wav"));
        Ok([left, right])
    }
}

/// The session's audio folder (Ardour names it after the session's folder).
fn audio_files(session: &Path) -> PathBuf {
    let name = session.file_name().expect("a session folder");
    session.join("interchange").join(name).join("audiofiles")
}

/// Puts `input` (stereo, `frames` long) at the start of the session's track "Mix" and sets the
/// session range to it: Ardour's Lua tool cannot import audio, so the session file gets the two
/// sources (one per channel of the same file) and the region, as Ardour writes them.
fn add_region(session: &Path, input: &Path, frames: usize) {
    let audio = audio_files(session);
    std::fs::copy(input, audio.join("mix.wav")).unwrap();
    let file = session.join("s.ardour");
    let mut xml = std::fs::read_to_string(&file).unwrap();
    let sources: String = (0..2)
        .map(|c| {
            format!(
                "    <Source id=\"{}\" name=\"mix.wav\" type=\"audio\" flags=\"\" origin=\"mix.wav\" gain=\"1\" channel=\"{c}\" take-id=\"\"/>\n",
                9001 + c
            )
        })
        .collect();
    let region = format!(
        "<Region id=\"9101\" name=\"mix\" muted=\"0\" opaque=\"1\" locked=\"0\" video-locked=\"0\" automatic=\"0\" \
         whole-file=\"0\" import=\"0\" external=\"0\" sync-marked=\"0\" left-of-split=\"0\" right-of-split=\"0\" hidden=\"0\" \
         position-locked=\"0\" valid-transients=\"0\" start=\"0\" length=\"{frames}\" position=\"0\" sync-position=\"0\" \
         ancestral-start=\"0\" ancestral-length=\"0\" stretch=\"1\" shift=\"1\" layering-index=\"0\" envelope-active=\"0\" \
         default-fade-in=\"0\" default-fade-out=\"0\" fade-in-active=\"0\" fade-out-active=\"0\" scale-amplitude=\"1\" \
         type=\"audio\" first-edit=\"nothing\" channels=\"2\" source-0=\"9001\" master-source-0=\"9001\" \
         source-1=\"9002\" master-source-1=\"9002\"/>"
    );
    let replace_once = |xml: &mut String, from: &str, to: &str| {
        assert!(xml.contains(from), "the saved session has no {from}");
        *xml = xml.replacen(from, to, 1);
    };
    replace_once(
        &mut xml,
        "<Sources/>",
        &format!("<Sources>\n{sources}  </Sources>"),
    );
    let start = xml.find("<Playlist ").expect("the track's playlist");
    let end = start + xml[start..].find("/>").expect("an empty playlist");
    xml.replace_range(end..end + 2, &format!(">\n      {region}\n    </Playlist>"));
    replace_once(
        &mut xml,
        "<Locations/>",
        &format!(
            "<Locations>\n    <Location id=\"99999\" name=\"session\" start=\"0\" end=\"{frames}\" flags=\"IsSessionRange\" locked=\"0\" timestamp=\"0\" cue=\"0\"/>\n  </Locations>"
        ),
    );
    std::fs::write(&file, xml).unwrap();
}

/// `stem` scaled by a gain that moves linearly in dB from `db0` at sample `t0` to `db1` at `t1`
/// and stays at either end outside.
fn with_gain_ramp(stem: &Stereo, (t0, db0): (usize, f32), (t1, db1): (usize, f32)) -> Stereo {
    let gain = |i: usize| {
        let db = if i <= t0 {
            db0
        } else if i >= t1 {
            db1
        } else {
            db0 + (db1 - db0) * (i - t0) as f32 / (t1 - t0) as f32
        };
        10f32.powf(db / 20.0)
    };
    [0, 1].map(|c| stem[c].iter().enumerate().map(|(i, x)| x * gain(i)).collect())
}

#[test]
#[ignore = "needs Ardour and the built bundles: run by `cargo xtask test`"]
fn ardour_exports_and_bounces_equal_the_command_line() {
    let bundles = bundle_dir();
    let dir = tempfile::tempdir().unwrap();
    // The excerpt: the first seconds of the demo mix, as 32-bit float.
    let frames = (EXCERPT_SECONDS * f64::from(RATE)) as usize;
    let mix = read_wav(&repo().join("models/demo/mix.wav"));
    let input: Stereo = [0, 1].map(|c| mix[c][..frames].to_vec());
    let input_path = dir.path().join("excerpt.wav");
    write_wav(&input_path, &input);

    // The command line of the same build, with the bundle's runtime and priors.
    let cli_out = dir.path().join("cli");
    let output = Command::new(bundles.join("Stemflow/stemflow"))
        .args(["separate", "--quiet", "--preset", "realtime", "-o"])
        .arg(&cli_out)
        .arg(&input_path)
        .env_remove("STEMFLOW_DATA_DIR")
        .env("XDG_DATA_HOME", dir.path().join("no-data"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the command line: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let cli: Vec<Stereo> = STEMS
        .iter()
        .map(|s| read_wav(&cli_out.join(format!("{s}.wav"))))
        .collect();

    let ardour = ArdourHome::new(&bundles.join("Stemflow.vst3"));
    let session =
        |solo: &str, automate: &str| ardour.session(dir.path(), &input_path, frames, solo, automate);
    let export =
        |what: &str, solo: &str, automate: &str| tried(what, || ardour.export(&session(solo, automate)?));
    let mut rows: Vec<(String, f64, f64)> = Vec::new();
    for (stem, want) in STEMS.iter().zip(&cli) {
        let solo = format!("{}{} Solo", stem[..1].to_uppercase(), &stem[1..]);
        let what = format!("export, {solo}");
        let exported = export(&what, &solo, "");
        rows.push((what, difference_db(&exported, want), MATCH_DB));
        if *stem == "bass" {
            let what = format!("bounce, {solo}");
            let bounced = tried(&what, || ardour.bounce(&session(&solo, "")?, frames));
            rows.push((what, difference_db(&bounced, want), MATCH_DB));
        }
    }
    let what = "export, no solo (unity) vs the input";
    rows.push((
        what.into(),
        difference_db(&export(what, "", ""), &input),
        MATCH_DB,
    ));
    let ramp = ((2 * RATE) as usize, 0.0f32);
    let ramp_end = ((8 * RATE) as usize, -12.0f32);
    let automate = format!("Bass Gain;{};{};{};{}", ramp.0, ramp.1, ramp_end.0, ramp_end.1);
    let want = with_gain_ramp(&cli[0], ramp, ramp_end);
    let what = "export, Bass Solo, Bass Gain automated 0 → −12 dB over 2–8 s";
    let automated = export(what, "Bass Solo", &automate);
    rows.push((what.into(), difference_db(&automated, &want), AUTOMATION_DB));

    eprintln!("Ardour 7 render vs `stemflow separate` ({EXCERPT_SECONDS} s of models/demo/mix.wav):");
    for (what, db, bound) in &rows {
        let shown = if db.is_infinite() {
            "identical".to_string()
        } else {
            format!("{db:.1} dB")
        };
        eprintln!("  {what}: {shown} (bound {bound} dB)");
    }
    for (what, db, bound) in &rows {
        assert!(
            db <= bound,
            "{what}: {db:.1} dB from what it must equal (at most {bound} dB)"
        );
    }
}
