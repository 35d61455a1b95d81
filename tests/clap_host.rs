//! An in-repo CLAP host (clack-host) that loads the built plugin and checks it as a DAW would:
//! ports and names, activation at 44.1/48/96 kHz with block sizes 1–8192, no NaN/Inf/denormal
//! on any output, stems summing to the input, the mono main-port layout, reported latency =
//! measured alignment, a state round trip (and corrupt/older states), an offline render equal to
//! the CLI's stems, and a parameter fuzz.
//!
//! The plugin is the crate's own cdylib, `target/<profile>/libstemflow.so`, which `cargo test`
//! builds with the library (with nice-plug's `assert_process_allocs` on, from the dev-dependency
//! features, so any allocation on the audio thread aborts the test). It is copied into a
//! temporary CLAP folder (`Stemflow/Stemflow.clap`) the way `cargo xtask bundle` lays it out.

// Sample loops over several buffers read best with an index.
#![allow(clippy::needless_range_loop)]

#[path = "support/clap_host.rs"]
mod host;

use clack_extensions::audio_ports::{AudioPortInfoBuffer, PluginAudioPorts};
use clack_extensions::audio_ports_config::{AudioPortsConfigBuffer, PluginAudioPortsConfig};
use clack_extensions::state::PluginState;
use clack_host::events::event_types::ParamValueEvent;
use clack_host::prelude::*;
use host::*;
use std::path::Path;
use stemflow::engine::search::settings::{DEFAULT_OVERLAP_SECONDS, LIVE_FRAME_SECONDS};
use stemflow::engine::search::stream_framing::HOP_SECONDS;
use stemflow::engine::signal::frames::FrameGeometry;

// ---------------------------------------------------------------------------------------------
// The checks.

#[test]
fn ports_names_and_parameters() {
    let _serial = serial();
    let mut instance = instance();
    let handle = instance.plugin_handle();
    let ports: PluginAudioPorts = handle.get_extension().expect("audio-ports extension");
    let mut buffer = AudioPortInfoBuffer::new();
    assert_eq!(ports.count(&handle, true), 1);
    let input = ports.get(&handle, 0, true, &mut buffer).unwrap();
    assert_eq!(input.name, b"Mix");
    assert_eq!(input.channel_count, 2);
    assert_eq!(ports.count(&handle, false), 1 + SLOTS as u32);
    let mut names = Vec::new();
    for i in 0..1 + SLOTS as u32 {
        let port = ports.get(&handle, i, false, &mut buffer).unwrap();
        assert_eq!(port.channel_count, 2, "output port {i}");
        names.push(String::from_utf8_lossy(port.name).into_owned());
    }
    let mut expected = vec!["Mix".to_string()];
    expected.extend(SLOT_NAMES.iter().map(|s| s.to_string()));
    assert_eq!(names, expected);

    let params: Vec<String> = param_list(&mut instance).into_iter().map(|(_, n, _)| n).collect();
    for slot in SLOT_NAMES {
        for what in ["Gain", "Mute", "Solo"] {
            let name = format!("{slot} {what}");
            assert!(params.contains(&name), "missing {name} in {params:?}");
        }
    }
    for name in [
        "Quality (iterations)",
        "Realtime quality (iterations)",
        "Separator",
        "Objective",
        "MAP gamma",
        "Output mode",
        "Device",
        "Processing allowance",
    ] {
        assert!(params.contains(&name.to_string()), "missing {name}");
    }
}

#[test]
fn every_rate_and_block_size_is_clean_aligned_and_sums_to_the_input() {
    let _serial = serial();
    // One instance, re-activated for every configuration, as a DAW does when settings change.
    let mut instance = instance();
    let quick = quick(&mut instance, 1);
    let mut first = true;
    for rate in [44_100.0f64, 48_000.0, 96_000.0] {
        for block in [1usize, 64, 512, 4096, 8192] {
            // Before its priors are loaded the plugin passes the mix through with silent stems;
            // the first activation gives the worker time to load them.
            let settle = std::time::Duration::from_secs(if first { 10 } else { 0 });
            first = false;
            let latency_expected = default_latency(rate);
            // Past the latency by a little: the outputs then carry (wet or fallback) stems.
            let seconds = latency_expected as f64 / rate + if block == 1 { 0.2 } else { 1.0 };
            let input = signal(rate, seconds, 2);
            let out = render(
                &mut instance,
                &input,
                RenderSpec {
                    first_events: &quick,
                    settle,
                    ..RenderSpec::new(rate, &[block])
                },
            );
            let what = format!("{rate} Hz, block {block}");
            assert_eq!(out.latency, latency_expected, "{what}: latency");
            assert_clean(&out, &what);
            let d = out.latency;
            let len = input[0].len();
            assert!(
                out.main.iter().all(|c| c[..d].iter().all(|x| *x == 0.0)),
                "{what}: silent before latency"
            );
            let sum = stem_sum(&out);
            for c in 0..2 {
                let delayed = &input[c][..len - d];
                let err = relative_error_db(&sum[c][d..], delayed);
                assert!(err < -50.0, "{what}: stems sum to the input within {err:.1} dB");
                let main_err = relative_error_db(&out.main[c][d..], delayed);
                assert!(main_err < -50.0, "{what}: main = input within {main_err:.1} dB");
            }
        }
    }
}

#[test]
fn mono_layout_is_offered_and_processes_cleanly() {
    let _serial = serial();
    let mut instance = instance();
    let handle = instance.plugin_handle();
    let configs: PluginAudioPortsConfig = handle.get_extension().expect("audio-ports-config extension");
    assert_eq!(configs.count(&handle), 2);
    let mut buffer = AudioPortsConfigBuffer::new();
    let mono = configs.get(&handle, 1, &mut buffer).expect("second layout");
    assert_eq!(mono.name, b"Mono");
    assert_eq!(
        (mono.input_port_count, mono.output_port_count),
        (1, 1 + SLOTS as u32)
    );
    let id = mono.id;
    configs.select(&handle, id).expect("mono layout selected");

    let ports: PluginAudioPorts = handle.get_extension().expect("audio-ports extension");
    let mut info = AudioPortInfoBuffer::new();
    let input = ports.get(&handle, 0, true, &mut info).unwrap();
    assert_eq!((input.name, input.channel_count), (&b"Mix"[..], 1));
    let main = ports.get(&handle, 0, false, &mut info).unwrap();
    assert_eq!((main.name, main.channel_count), (&b"Mix"[..], 1));
    for i in 1..=SLOTS as u32 {
        let port = ports.get(&handle, i, false, &mut info).unwrap();
        assert_eq!(port.channel_count, 2, "stem output {i} stays stereo");
    }

    let rate = 48_000.0;
    let quick = quick(&mut instance, 1);
    let latency_expected = default_latency(rate);
    let input = signal(rate, latency_expected as f64 / rate + 1.0, 1);
    let out = render(
        &mut instance,
        &input,
        RenderSpec {
            first_events: &quick,
            settle: std::time::Duration::from_secs(4),
            ..RenderSpec::new(rate, &[512])
        },
    );
    assert_eq!(out.latency, latency_expected, "mono: latency");
    assert_clean(&out, "mono");
    let d = out.latency;
    let delayed = &input[0][..input[0].len() - d];
    let main_err = relative_error_db(&out.main[0][d..], delayed);
    assert!(main_err < -50.0, "mono: main = input within {main_err:.1} dB");
    // Each stem is the mono stem on both channels of its stereo output.
    for (c, sum) in stem_sum(&out).iter().enumerate() {
        let err = relative_error_db(&sum[d..], delayed);
        assert!(
            err < -50.0,
            "mono: stems sum to the input on channel {c} within {err:.1} dB"
        );
    }
}

#[test]
fn reported_latency_equals_the_measured_alignment() {
    let _serial = serial();
    let rate = 48_000.0;
    let mut instance = instance();
    let quick = quick(&mut instance, 2);
    assert_aligned(&mut instance, rate, &quick, default_latency(rate));
}

#[test]
fn the_processing_allowance_sets_the_latency_from_the_next_activation() {
    let _serial = serial();
    let rate = 48_000.0;
    let mut instance = instance();
    let mut events = quick(&mut instance, 2).to_vec();
    events.push(allowance(&mut instance, 0.8));
    // Set while active: the latency reported at this activation stays.
    let out = render(
        &mut instance,
        &signal(rate, 0.05, 2),
        RenderSpec {
            first_events: &events,
            ..RenderSpec::new(rate, &[512])
        },
    );
    assert_eq!(out.latency, default_latency(rate));
    // The next activation reports the frame + 0.8 s, and the stems line up with it.
    assert_aligned(&mut instance, rate, &[], latency_with(rate, 0.8));
    // The whole hop: the largest allowance, the frame + 1.5 s; beyond it the value is held there.
    let top = [allowance(&mut instance, HOP_SECONDS)];
    render(
        &mut instance,
        &signal(rate, 0.05, 2),
        RenderSpec {
            first_events: &top,
            ..RenderSpec::new(rate, &[512])
        },
    );
    assert_aligned(&mut instance, rate, &[], latency_with(rate, HOP_SECONDS));
}

/// Renders a burst of noise offline and checks that the lag aligning the stems' sum with the
/// input best is `expected`, which is also the reported latency.
fn assert_aligned(
    instance: &mut PluginInstance<TestHost>,
    rate: f64,
    events: &[ParamValueEvent],
    expected: usize,
) {
    let d = expected;
    // Silence, a burst of noise at a known place, silence.
    let mut input = vec![vec![0.0f32; d + 60_000]; 2];
    let mut seed = 7u32;
    for i in 30_000..32_000 {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let x = (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
        input[0][i] = x;
        input[1][i] = -x;
    }
    let out = render(
        instance,
        &input,
        RenderSpec {
            offline: true,
            first_events: events,
            ..RenderSpec::new(rate, &[512])
        },
    );
    assert_eq!(out.latency, expected, "reported latency");
    let sum = stem_sum(&out);
    // The lag that best aligns the stems' sum with the input.
    let best = (d - 2000..d + 2000)
        .min_by(|&a, &b| {
            let err = |lag: usize| {
                relative_error_db(&sum[0][29_000 + lag..33_000 + lag], &input[0][29_000..33_000])
            };
            err(a).partial_cmp(&err(b)).unwrap()
        })
        .unwrap();
    assert_eq!(best, out.latency, "measured alignment vs reported latency");
    let err = relative_error_db(&sum[0][29_000 + best..33_000 + best], &input[0][29_000..33_000]);
    assert!(err < -50.0, "aligned error {err:.1} dB");
}

#[test]
fn state_round_trips_and_bad_states_load_defaults() {
    let _serial = serial();
    let mut a = instance();
    let defaults = param_values(&mut a);
    let events = [
        set(&mut a, "Bass Gain", 0.25),
        set(&mut a, "Drums Mute", 1.0),
        set(&mut a, "Spare 2 Solo", 1.0),
        iterations(&mut a, 37),
        set(&mut a, "Objective", 1.0),
        set(&mut a, "MAP gamma", 0.5),
        set(&mut a, "Output mode", 1.0),
    ];
    let input = signal(44_100.0, 0.05, 2);
    render(
        &mut a,
        &input,
        RenderSpec {
            first_events: &events,
            ..RenderSpec::new(44_100.0, &[256])
        },
    );
    let set_values = param_values(&mut a);
    assert_ne!(set_values, defaults, "the events changed the parameters");
    let mut saved = Vec::new();
    {
        let handle = a.plugin_handle();
        let state: PluginState = handle.get_extension().expect("state extension");
        state.save(&handle, &mut saved).expect("state saves");
    }

    let mut b = instance();
    {
        let handle = b.plugin_handle();
        let state: PluginState = handle.get_extension().unwrap();
        state.load(&handle, &mut saved.as_slice()).expect("state loads");
    }
    let restored = param_values(&mut b);
    for ((name, x), (_, y)) in set_values.iter().zip(&restored) {
        assert!((x - y).abs() < 1e-6, "{name}: saved {x}, restored {y}");
    }

    // A state saved by another version keeps its values (parameter ids are stable). The state is
    // a binary header then JSON: the version is replaced in the bytes, by one of the same length.
    let key = b"\"version\":\"";
    let at = saved
        .windows(key.len())
        .position(|w| w == key)
        .expect("the state names its version")
        + key.len();
    let len = saved[at..].iter().position(|&b| b == b'"').unwrap();
    let mut older = saved.clone();
    older[at..at + len].copy_from_slice(&b"9.9.99999"[..len]);
    assert_ne!(older, saved);
    let mut c = instance();
    {
        let handle = c.plugin_handle();
        let state: PluginState = handle.get_extension().unwrap();
        state
            .load(&handle, &mut older.as_slice())
            .expect("a state of another version loads");
    }
    let values = param_values(&mut c);
    for ((name, x), (_, y)) in set_values.iter().zip(&values) {
        assert!(
            (x - y).abs() < 1e-6,
            "{name}: saved {x}, restored from another version {y}"
        );
    }

    // Garbage: refused or ignored, never a crash; the instance still works.
    let mut d = instance();
    {
        let handle = d.plugin_handle();
        let state: PluginState = handle.get_extension().unwrap();
        let _ = state.load(&handle, &mut &b"\x00\xffnot a state{{{"[..]);
        let _ = state.load(
            &handle,
            &mut &b"{\"params\":{\"gain_1\":\"loud\"},\"fields\":{}}"[..],
        );
    }
    let out = render(&mut d, &input, RenderSpec::new(44_100.0, &[64]));
    assert_clean(&out, "after a corrupt state");
}

/// Which aux slot each CLI stem file lands in (the plugin's rule: shipped names keep their own
/// slot, the others fill the spares in name order).
fn slot_of(stems: &[String]) -> Vec<usize> {
    let mut next_spare = SHIPPED.len();
    stems
        .iter()
        .map(|s| match SHIPPED.iter().position(|x| x == s) {
            Some(slot) => slot,
            None => {
                next_spare += 1;
                next_spare - 1
            }
        })
        .collect()
}

fn read_wav(path: &Path) -> Vec<Vec<f32>> {
    let mut reader = hound::WavReader::open(path).unwrap();
    let channels = reader.spec().channels as usize;
    let samples: Vec<f32> = reader.samples::<f32>().map(Result::unwrap).collect();
    (0..channels)
        .map(|c| samples.iter().skip(c).step_by(channels).copied().collect())
        .collect()
}

#[test]
fn offline_bounce_equals_the_cli() {
    let _serial = serial();
    let rate = 44_100.0;
    let geometry = FrameGeometry::at_rate(44_100, LIVE_FRAME_SECONDS, DEFAULT_OVERLAP_SECONDS).unwrap();
    let step = geometry.step();
    // Two hops long: the file then ends where the CLI's last frame has no crossfade pending.
    let input = signal(rate, 2.0 * step as f64 / rate, 2);
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("mix.wav");
    {
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: rate as u32,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let mut writer = hound::WavWriter::create(&wav, spec).unwrap();
        for i in 0..input[0].len() {
            writer.write_sample(input[0][i]).unwrap();
            writer.write_sample(input[1][i]).unwrap();
        }
        writer.finalize().unwrap();
    }
    let out_dir = dir.path().join("stems");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_stemflow"))
        .arg("--ort-lib")
        .arg(set_up_runtime())
        .args([
            "separate",
            "--quiet",
            "--preset",
            "realtime",
            "--iterations",
            "2",
            "-o",
        ])
        .arg(&out_dir)
        .arg(&wav)
        .status()
        .unwrap();
    assert!(status.success(), "the CLI separates the file");
    let mut stems: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_suffix(".wav")
                .map(str::to_string)
        })
        .collect();
    stems.sort();
    assert!(!stems.is_empty());

    let mut instance = instance();
    let quick = quick(&mut instance, 2);
    let d = default_latency(rate);
    let padded = with_silence(input.clone(), d);
    let out = render(
        &mut instance,
        &padded,
        RenderSpec {
            offline: true,
            first_events: &quick,
            ..RenderSpec::new(rate, &[512, 77, 4096])
        },
    );
    assert_eq!(out.latency, d);
    assert_clean(&out, "offline");
    for (stem, slot) in stems.iter().zip(slot_of(&stems)) {
        let cli = read_wav(&out_dir.join(format!("{stem}.wav")));
        for c in 0..2 {
            let plugin = &out.aux[slot][c][d..d + cli[c].len()];
            let err = relative_error_db(plugin, &cli[c]);
            eprintln!(
                "{stem} (slot {}) channel {c}: plugin vs CLI {err:.1} dB",
                SLOT_NAMES[slot]
            );
            assert!(err <= -80.0, "{stem} channel {c}: plugin vs CLI {err:.1} dB");
        }
    }
}

#[test]
fn parameter_fuzz_does_not_crash() {
    let _serial = serial();
    let mut instance = instance();
    let params = param_list(&mut instance);
    let rate = 44_100.0;
    let input = signal(rate, 10.5, 2);
    let mut seed = 12_345u64;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) as u32
    };
    let mut fuzz = |block: usize| -> Vec<ParamValueEvent> {
        let mut events = Vec::new();
        if block == 0 {
            // Keep the worker's frames short.
            for knob in ["Quality (iterations)", "Realtime quality (iterations)"] {
                let (id, _, _) = params.iter().find(|(_, n, _)| n == knob).unwrap();
                events.push(ParamValueEvent::new(0, *id, Pckn::match_all(), 0.0));
            }
        }
        for _ in 0..next() % 4 {
            let (id, name, max) = &params[next() as usize % params.len()];
            if name.ends_with("(iterations)") {
                continue;
            }
            let v = (next() % 1001) as f64 / 1000.0 * max;
            let v = if *max > 1.0 { v.round() } else { v };
            events.push(ParamValueEvent::new(0, *id, Pckn::match_all(), v));
        }
        events
    };
    let out = render(
        &mut instance,
        &input,
        RenderSpec {
            fuzz: Some(&mut fuzz),
            ..RenderSpec::new(rate, &[1, 333, 8192, 64, 4000])
        },
    );
    assert_clean(&out, "fuzz");
}

/// With no ONNX Runtime anywhere (a fresh process: the runtime is loaded once per process), the
/// plugin still loads, reports its latency and passes the mix through; the stem outputs are silent.
#[test]
fn missing_runtime_passes_audio_through() {
    if std::env::var_os(NO_RUNTIME_CHILD).is_some() {
        return passthrough_child();
    }
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "missing_runtime_passes_audio_through", "--nocapture"])
        .env(NO_RUNTIME_CHILD, "1")
        .env_remove("STEMFLOW_ORT_LIB")
        .status()
        .unwrap();
    assert!(status.success(), "the child process without a runtime failed");
}

fn passthrough_child() {
    let _serial = serial();
    let rate = 44_100.0;
    let mut instance = instance();
    let d = default_latency(rate);
    let input = signal(rate, d as f64 / rate + 1.0, 2);
    let out = render(
        &mut instance,
        &input,
        RenderSpec {
            offline: true,
            ..RenderSpec::new(rate, &[512])
        },
    );
    assert_eq!(out.latency, d);
    assert_clean(&out, "no runtime");
    let len = input[0].len();
    for c in 0..2 {
        assert_eq!(&out.main[c][d..], &input[c][..len - d], "main = the delayed mix");
    }
    assert!(
        out.aux.iter().flatten().all(|ch| ch.iter().all(|x| *x == 0.0)),
        "stems are silent"
    );
}

/// Faults inside the plugin's worker, each in a fresh process whose bundle holds the priors
/// named, under a deadline:
/// - a prior that fails mid-search beside a sound one: `toy_nan` (its gradient is NaN, so every
///   frame's search turns non-finite after its first step) and `toy_error` (its gradient graph
///   fails when it runs), from `tests/fixtures/toy_prior`; both load and calibrate;
/// - faults injected into the engine (`engine::fault`, `STEMFLOW_FAULT`): a panic while a prior
///   loads, a panic in the second frame, a load that never returns, a second frame that never
///   returns and one that stalls until the host has rendered on past it and then goes on (with
///   the plugin's stall limit shortened to 3 s).
///
/// For each, an offline bounce finishes, every output sample is finite, the main output is the
/// delayed mix (a frame that failed plays dry; a separated one sums to the input), destroying the
/// plugin returns within its shutdown wait, and the host's log says what happened.
#[test]
fn faults_in_the_worker_give_dry_audio_and_the_bounce_finishes() {
    if std::env::var_os(BUNDLE_PRIORS_CHILD).is_some() {
        return failing_prior_child();
    }
    struct Case {
        name: &'static str,
        priors: &'static [&'static str],
        fault: Option<&'static str>,
        /// What the host's log (the child's stderr) must contain.
        logged: &'static str,
    }
    let cases = [
        Case {
            name: "NaN gradient",
            priors: &["toy", "toy_nan"],
            fault: None,
            logged: "non-finite",
        },
        Case {
            name: "failing graph",
            priors: &["toy", "toy_error"],
            fault: None,
            logged: "not separated",
        },
        Case {
            name: "panic while loading",
            priors: &["toy"],
            fault: Some("load-panic"),
            logged: "fault injected by a test: load-panic",
        },
        Case {
            name: "panic in a frame",
            priors: &["toy"],
            fault: Some("frame-panic"),
            logged: "fault injected by a test: frame-panic",
        },
        Case {
            name: "load that hangs",
            priors: &["toy"],
            fault: Some("load-hang"),
            logged: "did not stop within",
        },
        Case {
            name: "frame that hangs",
            priors: &["toy"],
            fault: Some("frame-hang"),
            logged: "did not stop within",
        },
        Case {
            name: "frame that stalls, then goes on",
            priors: &["toy"],
            fault: Some("frame-stall"),
            logged: "offline activation ended",
        },
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut children = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let priors = dir.path().join(format!("priors-{i}"));
        std::fs::create_dir_all(&priors).unwrap();
        for stem in case.priors {
            let source = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/toy_prior")
                .join(stem);
            std::os::unix::fs::symlink(source, priors.join(stem)).unwrap();
        }
        let log = dir.path().join(format!("log-{i}"));
        let mut command = std::process::Command::new(std::env::current_exe().unwrap());
        command
            .args([
                "--exact",
                "faults_in_the_worker_give_dry_audio_and_the_bounce_finishes",
                "--nocapture",
            ])
            .env(BUNDLE_PRIORS_CHILD, &priors)
            // Another test in this process may have hidden the set-up location already (`entry`):
            // hand the child the real one, where the runtime was found first.
            .env("STEMFLOW_DATA_DIR", set_up_runtime().parent().unwrap())
            .env("STEMFLOW_STALL_SECONDS", "3")
            .env_remove("STEMFLOW_FAULT")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        if let Some(fault) = case.fault {
            command
                .env("STEMFLOW_FAULT", fault)
                .env("STEMFLOW_FAULT_RELEASE", dir.path().join(format!("release-{i}")));
        }
        children.push((case, command.spawn().unwrap(), log));
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    for (case, mut child, log) in children {
        let status = wait_until(&mut child, deadline, case.name);
        let log = std::fs::read_to_string(&log).unwrap();
        assert!(
            status.success(),
            "{}: the child process failed:\n{log}",
            case.name
        );
        assert!(
            log.contains(case.logged),
            "{}: the log does not say `{}`:\n{log}",
            case.name,
            case.logged
        );
    }
}

fn failing_prior_child() {
    let _serial = serial();
    let rate = 44_100.0;
    let mut instance = instance();
    let events = quick(&mut instance, 3);
    // A worker that stalls and then goes on: the second frame shows no sign of work until the
    // host has rendered 40 s (unpaced: the render gives up waiting after the stall limit and
    // frames find no free buffer and are skipped), then the host slows to about six times real
    // time so the output reaches the segments of skipped frames after the worker moves again:
    // those must play dry at once, not be waited for.
    let stalls = std::env::var("STEMFLOW_FAULT").is_ok_and(|f| f == "frame-stall");
    // At least 13 s: the output then reaches segment 1, so the render waits for the second frame
    // (where the frame faults strike) instead of ending before the worker may have taken it.
    let input = signal(rate, if stalls { 60.0 } else { 15.0 }, 2);
    let release = std::env::var_os("STEMFLOW_FAULT_RELEASE").map(std::path::PathBuf::from);
    let release_block = (40.0 * rate) as usize / 512;
    let mut slow_host = |block: usize| {
        if block == release_block {
            if let Some(file) = &release {
                std::fs::write(file, b"").unwrap();
            }
        }
        if block >= release_block {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        Vec::new()
    };
    let out = render(
        &mut instance,
        &input,
        RenderSpec {
            offline: true,
            first_events: &events,
            fuzz: stalls.then_some(&mut slow_host as &mut dyn FnMut(usize) -> Vec<ParamValueEvent>),
            ..RenderSpec::new(rate, &[512])
        },
    );
    assert_clean(&out, "failing prior");
    let d = out.latency;
    let len = input[0].len();
    // Output starts with the ramp from the silence of the latency into the first segment.
    let ramp = (stemflow::engine::search::stream_framing::RAMP_SECONDS * rate).round() as usize;
    for c in 0..2 {
        let (at, max_error) = out.main[c][d + ramp..]
            .iter()
            .zip(&input[c][ramp..len - d])
            .map(|(y, x)| (y - x).abs())
            .enumerate()
            .fold((0, 0.0f32), |(i, m), (j, e)| if e > m { (j, e) } else { (i, m) });
        assert!(
            max_error < 1e-5,
            "main = the delayed mix (dry), off by {max_error} at input sample {}",
            at + ramp
        );
    }
    // Within the worker's shutdown wait (10 s) and a margin, even with the worker stuck.
    let started = std::time::Instant::now();
    drop(instance);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "destroying the plugin took {:?}",
        started.elapsed()
    );
}

/// Settings the loaded priors cannot separate with (the Langevin separator, with priors that
/// have no `score` graph) pass the audio through; switching back to Adam within the same
/// activation separates again, the priors kept. In a child process whose bundle holds the two toy
/// priors (so separated stems differ from the dry fallback's equal shares).
#[test]
fn a_separator_the_priors_cannot_run_plays_dry_and_switching_back_separates() {
    if std::env::var_os(BUNDLE_PRIORS_CHILD).is_some() {
        return unbuildable_separator_child();
    }
    run_child_with_toy_priors(
        "a_separator_the_priors_cannot_run_plays_dry_and_switching_back_separates",
        "the separator switch",
        240,
    );
}

fn unbuildable_separator_child() {
    let _serial = serial();
    let rate = 44_100.0;
    let mut instance = instance();
    let mut first: Vec<ParamValueEvent> = quick(&mut instance, 2).to_vec();
    first.push(set(&mut instance, "Separator", 1.0));
    let adam = set(&mut instance, "Separator", 0.0);
    let input = signal(rate, 30.0, 2);
    // Back to Adam after 12 s of input; the next block waits 3 s, time for the worker to see
    // the change and build its separator (a few milliseconds with the toy priors), so the frames
    // from 13.5 s on reach a worker that separates.
    let switch_block = (12.0 * rate) as usize / 512;
    let mut switch_back = |block: usize| {
        if block == switch_block + 1 {
            std::thread::sleep(std::time::Duration::from_secs(3));
        }
        if block == switch_block {
            vec![adam]
        } else {
            Vec::new()
        }
    };
    let out = render(
        &mut instance,
        &input,
        RenderSpec {
            offline: true,
            first_events: &first,
            fuzz: Some(&mut switch_back),
            ..RenderSpec::new(rate, &[512])
        },
    );
    assert_clean(&out, "separator switch");
    let stems: Vec<&[f32]> = out
        .aux
        .iter()
        .map(|port| port[0].as_slice())
        .filter(|x| x.iter().any(|v| *v != 0.0))
        .collect();
    assert_eq!(stems.len(), 2, "two stems play");
    // Output sample of input second `t`.
    let at = |t: f64| out.latency + (t * rate) as usize;
    let window = |from: f64, to: f64| at(from)..at(to);
    let dry = window(0.5, 4.0);
    assert_eq!(
        stems[0][dry.clone()],
        stems[1][dry],
        "with Langevin, which the toy priors cannot run, each stem is the dry share"
    );
    let separated = window(14.0, 21.0);
    assert_ne!(
        stems[0][separated.clone()],
        stems[1][separated],
        "after switching back to Adam the frames are separated again"
    );
}

/// A soak of the plugin's life cycle, in a child process whose bundle holds the toy priors (so
/// eight instances load in a moment): eight instances in one process, each round every instance
/// does one of these, chosen by a seeded generator — a realtime or offline render at 22.05, 44.1,
/// 48 or 96 kHz (rate and render mode change between activations) with random block sizes and
/// resets, a render that ends while a long frame is in work, destroy during a load (activate, one
/// block, destroy), or destroy mid-frame (the instance is replaced by a new one). At the end of
/// every round each instance renders offline at 44.1 kHz until its worker has separated a frame,
/// so all are in the same state, and the process's thread count, its heap in use (glibc's
/// `mallinfo2`) and its resident size are taken: after two warm-up rounds none may grow beyond a
/// small margin.
#[test]
fn soak_eight_instances_through_lifecycle_changes() {
    if std::env::var_os(BUNDLE_PRIORS_CHILD).is_some() {
        return soak_child();
    }
    run_child_with_toy_priors("soak_eight_instances_through_lifecycle_changes", "the soak", 400);
}

/// Asserts that the soak's settling render played separated stems after its latency: a frame
/// played dry splits the mix evenly, so every stem in use would be the same.
fn assert_separated(out: &Render, round: usize) {
    let tails: Vec<&[f32]> = out
        .aux
        .iter()
        .map(|port| &port[0][out.latency..])
        .filter(|tail| tail.iter().any(|x| *x != 0.0))
        .collect();
    assert!(
        tails.len() >= 2 && tails.windows(2).any(|w| w[0] != w[1]),
        "round {round}: the settling render was not separated ({} stems playing)",
        tails.len()
    );
}

/// The exit status of `child`, which must end before `deadline` (else it is killed and the test
/// fails, naming `what`).
fn wait_until(
    child: &mut std::process::Child,
    deadline: std::time::Instant,
    what: &str,
) -> std::process::ExitStatus {
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what}: the child process did not finish by its deadline");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// What the soak measures between rounds.
#[derive(Debug, Clone, Copy)]
struct Footprint {
    threads: usize,
    heap_bytes: usize,
    resident_bytes: usize,
}

fn footprint() -> Footprint {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| -> usize {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/self/status"))
    };
    // SAFETY: mallinfo2 only reads the allocator's counters.
    let heap_bytes = unsafe { libc::mallinfo2() }.uordblks;
    Footprint {
        threads: field("Threads:"),
        heap_bytes,
        resident_bytes: field("VmRSS:") * 1024,
    }
}

/// A small deterministic generator (xorshift64*), so a failing soak can be replayed.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

fn soak_child() {
    let _serial = serial();
    const INSTANCES: usize = 8;
    const ROUNDS: usize = 10;
    const WARM_UP: usize = 2;
    // Heap the process may gain after the warm-up: a leak of one frame buffer per operation
    // (64 operations after it; an input frame is ≥ 0.88 MB at these rates) exceeds it. With every
    // instance brought to the same state before each measurement the heap stays within a few
    // hundred kB of the warm-up's.
    const HEAP_MARGIN: usize = 32 * 1024 * 1024;
    let rates = [22_050.0, 44_100.0, 48_000.0, 96_000.0];
    let block_sets: [&[usize]; 3] = [&[512], &[1, 64, 4096], &[8192, 333]];
    let mut dice = Dice(0x005e_ed0f_50a6);
    let mut instances: Vec<_> = (0..INSTANCES).map(|_| instance()).collect();
    let mut after_warm_up: Option<Footprint> = None;
    const SETTLE_RATE: f64 = 44_100.0;
    let settle_input = signal(
        SETTLE_RATE,
        (default_latency(SETTLE_RATE) + 2048) as f64 / SETTLE_RATE,
        2,
    );
    for round in 0..ROUNDS {
        for slot in 0..INSTANCES {
            let rate = rates[dice.below(rates.len())];
            let blocks = block_sets[dice.below(block_sets.len())];
            match dice.below(5) {
                // A render in either mode, with resets now and then.
                0 | 1 => {
                    let seconds = 0.5 + dice.below(12) as f64 * 0.5;
                    let offline = dice.below(2) == 0;
                    let instance = &mut instances[slot];
                    let events = quick(instance, 2);
                    let input = signal(rate, seconds, 2);
                    let out = render(
                        instance,
                        &input,
                        RenderSpec {
                            offline,
                            first_events: &events,
                            reset_every: (dice.below(2) == 0).then_some(97),
                            ..RenderSpec::new(rate, blocks)
                        },
                    );
                    assert_clean(&out, "soak render");
                }
                // A realtime render that ends while a long frame is in work.
                2 => {
                    let instance = &mut instances[slot];
                    let events = quick(instance, 5000);
                    let input = signal(rate, 5.5, 2);
                    let out = render(
                        instance,
                        &input,
                        RenderSpec {
                            first_events: &events,
                            settle: std::time::Duration::from_millis(300),
                            ..RenderSpec::new(rate, blocks)
                        },
                    );
                    assert_clean(&out, "soak render ending mid-frame");
                }
                // Destroy during a load: a new instance, activated, one block, destroyed.
                3 => {
                    let mut fresh = instance();
                    let input = signal(rate, 0.05, 2);
                    render(&mut fresh, &input, RenderSpec::new(rate, &[512]));
                    let started = std::time::Instant::now();
                    drop(fresh);
                    assert!(started.elapsed() < std::time::Duration::from_secs(15));
                }
                // Destroy mid-frame: process past the first frame with a long search, destroy.
                _ => {
                    let mut doomed = std::mem::replace(&mut instances[slot], instance());
                    let events = quick(&mut doomed, 5000);
                    let input = signal(rate, 5.5, 2);
                    render(
                        &mut doomed,
                        &input,
                        RenderSpec {
                            first_events: &events,
                            settle: std::time::Duration::from_millis(300),
                            ..RenderSpec::new(rate, &[4096])
                        },
                    );
                    let started = std::time::Instant::now();
                    drop(doomed);
                    assert!(started.elapsed() < std::time::Duration::from_secs(15));
                }
            }
        }
        // The same state for every instance before measuring: an offline render at 44.1 kHz
        // just past the latency, which waits for the worker to load its priors, rebuild its
        // separator and separate frame 0. Whether an operation's own frame got separated
        // depends on thread timing (a realtime render ends at once, and its frame is cancelled
        // or never started), and an instance's first separated frame keeps what later frames
        // reuse: each prior's gradient buffer and ONNX Runtime's arena for its gradient graph
        // (about 17 MB for the two toy priors). Without this every instance whose worker first
        // got to a frame after the warm-up would count as growth.
        for instance in instances.iter_mut() {
            let events = quick(instance, 2);
            let out = render(
                instance,
                &settle_input,
                RenderSpec {
                    offline: true,
                    first_events: &events,
                    ..RenderSpec::new(SETTLE_RATE, &[512])
                },
            );
            assert_clean(&out, "soak settle");
            assert_separated(&out, round);
        }
        let now = footprint();
        eprintln!("soak round {round}: {now:?}");
        if round + 1 == WARM_UP {
            after_warm_up = Some(now);
        } else if let Some(base) = after_warm_up {
            assert!(
                now.threads <= base.threads,
                "round {round}: {} threads, {} after the warm-up",
                now.threads,
                base.threads
            );
            assert!(
                now.heap_bytes <= base.heap_bytes + HEAP_MARGIN,
                "round {round}: heap {} bytes, {} after the warm-up",
                now.heap_bytes,
                base.heap_bytes
            );
            assert!(
                now.resident_bytes <= base.resident_bytes + base.resident_bytes / 4,
                "round {round}: resident {} bytes, {} after the warm-up",
                now.resident_bytes,
                base.resident_bytes
            );
        }
    }
    for instance in instances {
        let started = std::time::Instant::now();
        drop(instance);
        assert!(started.elapsed() < std::time::Duration::from_secs(15));
    }
}

/// Runs the test `test` again in a child process whose bundle holds the two toy priors, and
/// fails unless it succeeds within `seconds` (`what` names it in the failure).
fn run_child_with_toy_priors(test: &str, what: &str, seconds: u64) {
    let dir = tempfile::tempdir().unwrap();
    let priors = dir.path().join("priors");
    std::fs::create_dir_all(&priors).unwrap();
    for stem in ["toy", "toy_b"] {
        let source = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/toy_prior")
            .join(stem);
        std::os::unix::fs::symlink(source, priors.join(stem)).unwrap();
    }
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture"])
        .env(BUNDLE_PRIORS_CHILD, &priors)
        .env("STEMFLOW_DATA_DIR", set_up_runtime().parent().unwrap())
        .env_remove("STEMFLOW_FAULT")
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    let status = wait_until(&mut child, deadline, what);
    assert!(status.success(), "{what}: the child process failed");
}
