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

use clack_extensions::audio_ports::{
    AudioPortInfoBuffer, AudioPortRescanFlags, HostAudioPorts, HostAudioPortsImpl, PluginAudioPorts,
};
use clack_extensions::audio_ports_config::{AudioPortsConfigBuffer, PluginAudioPortsConfig};
use clack_extensions::gui::{GuiSize, HostGui, HostGuiImpl};
use clack_extensions::latency::{HostLatency, HostLatencyImpl, PluginLatency};
use clack_extensions::log::{HostLog, HostLogImpl, LogSeverity};
use clack_extensions::params::{
    HostParams, HostParamsImplMainThread, HostParamsImplShared, ParamClearFlags, ParamInfoBuffer,
    ParamRescanFlags, PluginParams,
};
use clack_extensions::render::{PluginRender, RenderMode};
use clack_extensions::state::{HostState, HostStateImpl, PluginState};
use clack_host::events::event_types::ParamValueEvent;
use clack_host::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

const PLUGIN_ID: &std::ffi::CStr = c"org.stemflow.stemflow";
const SLOTS: usize = 8;
const SLOT_NAMES: [&str; SLOTS] = [
    "Bass", "Drums", "Guitar", "Piano", "Spare 1", "Spare 2", "Spare 3", "Spare 4",
];
const SHIPPED: [&str; 4] = ["bass", "drums", "guitar", "piano"];
/// Set in the child process that runs without an ONNX Runtime.
const NO_RUNTIME_CHILD: &str = "STEMFLOW_TEST_NO_RUNTIME_CHILD";

// ---------------------------------------------------------------------------------------------
// The host.

#[derive(Default)]
struct Shared {
    callback: AtomicBool,
    restart: AtomicBool,
}

impl SharedHandler<'_> for Shared {
    fn request_restart(&self) {
        self.restart.store(true, Ordering::Release);
    }
    fn request_process(&self) {}
    fn request_callback(&self) {
        self.callback.store(true, Ordering::Release);
    }
}

impl HostLogImpl for Shared {
    fn log(&self, severity: LogSeverity, message: &str) {
        eprintln!("[plugin {severity}] {message}");
    }
}

impl HostParamsImplShared for Shared {
    fn request_flush(&self) {}
}

impl HostGuiImpl for Shared {
    fn resize_hints_changed(&self) {}
    fn request_resize(&self, _new_size: GuiSize) -> Result<(), HostError> {
        Ok(())
    }
    fn request_show(&self) -> Result<(), HostError> {
        Ok(())
    }
    fn request_hide(&self) -> Result<(), HostError> {
        Ok(())
    }
    fn closed(&self, _was_destroyed: bool) {}
}

struct MainThread;

impl MainThreadHandler<'_> for MainThread {}

impl HostLatencyImpl for MainThread {
    fn changed(&self) {}
}

impl HostStateImpl for MainThread {
    fn mark_dirty(&self) {}
}

impl HostParamsImplMainThread for MainThread {
    fn rescan(&self, _flags: ParamRescanFlags) {}
    fn clear(&self, _param_id: ClapId, _flags: ParamClearFlags) {}
}

impl HostAudioPortsImpl for MainThread {
    fn is_rescan_flag_supported(&self, _flag: AudioPortRescanFlags) -> bool {
        false
    }
    fn rescan(&self, _flags: AudioPortRescanFlags) {}
}

struct TestHost;

impl HostHandlers for TestHost {
    type Shared<'a> = Shared;
    type MainThread<'a> = MainThread;
    type AudioProcessor<'a> = ();

    fn declare_extensions(builder: &mut HostExtensions<Self>, _shared: &Self::Shared<'_>) {
        builder
            .register::<HostLog>()
            .register::<HostLatency>()
            .register::<HostState>()
            .register::<HostParams>()
            .register::<HostAudioPorts>()
            .register::<HostGui>();
    }
}

// ---------------------------------------------------------------------------------------------
// Loading.

/// One test at a time: instances share the plugin library's process-wide runtime and worker pool.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// The cdylib `cargo test` built with this test binary: `target/<profile>/deps/libstemflow.so`
/// (built in the same cargo invocation; the copy one level up is only refreshed by `cargo build`).
fn built_library() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe.parent().expect("target/<profile>/deps");
    let name = format!(
        "{}stemflow{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    let library = deps.join(&name);
    assert!(library.is_file(), "{} was not built", library.display());
    library
}

/// Where `cargo xtask setup` installed the runtime (read before the test hides it).
fn set_up_runtime() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        stemflow::engine::priors::data_dir::data_dir()
            .expect("a data dir")
            .join("runtime")
    })
    .clone()
}

/// The plugin, copied into a CLAP folder laid out like the bundle (`Stemflow.clap`, `lib/` with
/// the runtime, `priors/`), loaded once per process. The set-up location is hidden from the
/// plugin (`STEMFLOW_DATA_DIR` and `XDG_DATA_HOME` point at an empty folder), so it must find its
/// runtime relative to its own binary.
fn entry() -> &'static PluginEntry {
    static ENTRY: OnceLock<(tempfile::TempDir, PluginEntry)> = OnceLock::new();
    &ENTRY
        .get_or_init(|| {
            let runtime = set_up_runtime();
            let dir = tempfile::tempdir().unwrap();
            let folder = dir.path().join("Stemflow");
            std::fs::create_dir_all(folder.join("lib")).unwrap();
            let files = if std::env::var_os(NO_RUNTIME_CHILD).is_some() {
                Vec::new() // the child process of `missing_runtime_passes_audio_through`
            } else {
                std::fs::read_dir(&runtime)
                    .expect("cargo xtask setup has run")
                    .collect()
            };
            for file in files {
                let file = file.unwrap();
                std::os::unix::fs::symlink(file.path(), folder.join("lib").join(file.file_name())).unwrap();
            }
            let priors = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/priors");
            std::os::unix::fs::symlink(priors, folder.join("priors")).unwrap();
            let empty = dir.path().join("empty-data-dir");
            std::fs::create_dir_all(&empty).unwrap();
            // SAFETY (edition 2021: safe): set once, before any plugin thread reads it.
            std::env::set_var("STEMFLOW_DATA_DIR", &empty);
            // The plugin ignores that override and looks in the platform's data folder: make
            // that empty too, so only the bundle's priors are seen.
            std::env::set_var("XDG_DATA_HOME", &empty);
            let clap = folder.join("Stemflow.clap");
            std::fs::copy(built_library(), &clap).unwrap();
            // SAFETY: loading our own plugin library.
            let entry = unsafe { PluginEntry::load(&clap) }.expect("the .clap loads");
            (dir, entry)
        })
        .1
}

fn host_info() -> HostInfo {
    HostInfo::new(
        "stemflow-test-host",
        "Stemflow",
        "https://stemflow.invalid",
        "1.0",
    )
    .unwrap()
}

fn instance() -> PluginInstance<TestHost> {
    PluginInstance::<TestHost>::new(
        |_| Shared::default(),
        |_| MainThread,
        entry(),
        PLUGIN_ID,
        &host_info(),
    )
    .expect("the plugin instantiates")
}

/// Every parameter: (id, name, max value). Stepped parameters take plain step indices; the
/// others normalized values in [0, 1].
fn param_list(instance: &mut PluginInstance<TestHost>) -> Vec<(ClapId, String, f64)> {
    let handle = instance.plugin_handle();
    let params: PluginParams = handle.get_extension().expect("params extension");
    let mut buffer = ParamInfoBuffer::new();
    (0..params.count(&handle))
        .filter_map(|i| {
            let info = params.get_info(&handle, i, &mut buffer)?;
            Some((
                info.id,
                String::from_utf8_lossy(info.name).into_owned(),
                info.max_value,
            ))
        })
        .collect()
}

fn param_id(instance: &mut PluginInstance<TestHost>, name: &str) -> ClapId {
    param_list(instance)
        .into_iter()
        .find(|(_, n, _)| n == name)
        .unwrap_or_else(|| panic!("no parameter named {name}"))
        .0
}

fn param_values(instance: &mut PluginInstance<TestHost>) -> Vec<(String, f64)> {
    let list = param_list(instance);
    let handle = instance.plugin_handle();
    let params: PluginParams = handle.get_extension().unwrap();
    list.into_iter()
        .map(|(id, name, _)| (name, params.get_value(&handle, id).unwrap()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Rendering.

struct Render {
    latency: usize,
    /// Main output, per channel.
    main: Vec<Vec<f32>>,
    /// Aux outputs: slot × channel.
    aux: Vec<Vec<Vec<f32>>>,
}

struct RenderSpec<'a> {
    rate: f64,
    /// Block sizes, used in turn (a single entry: fixed blocks).
    blocks: &'a [usize],
    offline: bool,
    /// Events sent with the first block.
    first_events: &'a [ParamValueEvent],
    /// Called before every block with the block index; returns events for that block.
    fuzz: Option<&'a mut dyn FnMut(usize) -> Vec<ParamValueEvent>>,
    /// Wall time to wait after starting to process (lets the worker load its priors).
    settle: std::time::Duration,
}

impl<'a> RenderSpec<'a> {
    /// Realtime at `rate` in `blocks`, with no events, no fuzz and no wait; tests override the
    /// fields they need (`offline`, `first_events`, ...) with struct-update syntax.
    fn new(rate: f64, blocks: &'a [usize]) -> Self {
        RenderSpec {
            rate,
            blocks,
            offline: false,
            first_events: &[],
            fuzz: None,
            settle: std::time::Duration::ZERO,
        }
    }
}

fn render(instance: &mut PluginInstance<TestHost>, input: &[Vec<f32>], spec: RenderSpec) -> Render {
    let RenderSpec {
        rate,
        blocks,
        offline,
        first_events,
        mut fuzz,
        settle,
    } = spec;
    let max_block = *blocks.iter().max().unwrap();
    if offline {
        let handle = instance.plugin_handle();
        let render: PluginRender = handle.get_extension().expect("render extension");
        render
            .set(&handle, RenderMode::Offline)
            .expect("offline mode accepted");
    }
    let config = PluginAudioConfiguration {
        sample_rate: rate,
        min_frames_count: 1,
        max_frames_count: max_block as u32,
    };
    let processor = instance.activate(|_, _| (), config).expect("activates");
    let latency = {
        let handle = instance.plugin_handle();
        let ext: PluginLatency = handle.get_extension().expect("latency extension");
        ext.get(&handle) as usize
    };
    let mut processor = processor.start_processing().expect("starts processing");
    std::thread::sleep(settle);
    let channels = input.len();
    let total = input[0].len();
    let mut in_ports = AudioPorts::with_capacity(channels, 1);
    let mut out_ports = AudioPorts::with_capacity(channels + 2 * SLOTS, 1 + SLOTS);
    let mut in_buf = vec![vec![0.0f32; max_block]; channels];
    let mut main_buf = vec![vec![0.0f32; max_block]; channels];
    let mut aux_buf = vec![vec![0.0f32; max_block]; 2 * SLOTS];
    let mut main: Vec<Vec<f32>> = vec![Vec::with_capacity(total); channels];
    let mut aux: Vec<Vec<Vec<f32>>> = (0..SLOTS)
        .map(|_| (0..2).map(|_| Vec::with_capacity(total)).collect())
        .collect();
    let mut pos = 0;
    let mut block_index = 0;
    while pos < total {
        let n = blocks[block_index % blocks.len()].min(total - pos);
        for (b, x) in in_buf.iter_mut().zip(input) {
            b[..n].copy_from_slice(&x[pos..pos + n]);
        }
        let mut events = EventBuffer::new();
        if block_index == 0 {
            for e in first_events {
                events.push(e);
            }
        }
        if let Some(f) = fuzz.as_mut() {
            for e in f(block_index) {
                events.push(&e);
            }
        }
        {
            let input_audio = in_ports.with_input_buffers([AudioPortBuffer {
                latency: 0,
                channels: AudioPortBufferType::f32_input_only(
                    in_buf.iter_mut().map(|b| InputChannel::variable(&mut b[..n])),
                ),
            }]);
            let (main_slice, aux_slice) = (&mut main_buf, &mut aux_buf);
            let ports: Vec<Vec<&mut [f32]>> =
                std::iter::once(main_slice.iter_mut().map(|b| &mut b[..n]).collect::<Vec<_>>())
                    .chain(
                        aux_slice
                            .chunks_mut(2)
                            .map(|port| port.iter_mut().map(|b| &mut b[..n]).collect()),
                    )
                    .collect();
            let mut output_audio =
                out_ports.with_output_buffers(ports.into_iter().map(|port| AudioPortBuffer {
                    latency: 0,
                    channels: AudioPortBufferType::f32_output_only(port.into_iter()),
                }));
            let mut out_events = EventBuffer::new();
            processor
                .process(
                    &input_audio,
                    &mut output_audio,
                    &InputEvents::from_buffer(&events),
                    &mut OutputEvents::from_buffer(&mut out_events),
                    Some(pos as u64),
                    None,
                )
                .expect("process succeeds");
        }
        for (m, b) in main.iter_mut().zip(&main_buf) {
            m.extend_from_slice(&b[..n]);
        }
        for (slot, port) in aux.iter_mut().enumerate() {
            for (c, ch) in port.iter_mut().enumerate() {
                ch.extend_from_slice(&aux_buf[slot * 2 + c][..n]);
            }
        }
        if instance.access_shared_handler(|s| s.callback.swap(false, Ordering::AcqRel)) {
            instance.call_on_main_thread_callback();
        }
        pos += n;
        block_index += 1;
    }
    let stopped = processor.stop_processing();
    instance.deactivate(stopped);
    Render { latency, main, aux }
}

/// A deterministic test signal: a few partials and a little noise, different per channel.
fn signal(rate: f64, seconds: f64, channels: usize) -> Vec<Vec<f32>> {
    let len = (rate * seconds).round() as usize;
    let mut seed = 0x2545_f491_u32;
    (0..channels)
        .map(|c| {
            (0..len)
                .map(|i| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    let noise = (seed as f32 / u32::MAX as f32 - 0.5) * 0.05;
                    let t = i as f64 / rate;
                    let tone = 0.3 * (2.0 * std::f64::consts::PI * 220.0 * t).sin()
                        + 0.2 * (2.0 * std::f64::consts::PI * (330.0 + 40.0 * c as f64) * t).sin();
                    (tone as f32 + noise)
                        * if ((t * 2.0) as usize).is_multiple_of(2) {
                            1.0
                        } else {
                            0.6
                        }
                })
                .collect()
        })
        .collect()
}

fn with_silence(mut input: Vec<Vec<f32>>, extra: usize) -> Vec<Vec<f32>> {
    for ch in &mut input {
        ch.extend(std::iter::repeat_n(0.0, extra));
    }
    input
}

fn assert_clean(render: &Render, what: &str) {
    let all = render.main.iter().chain(render.aux.iter().flatten());
    for (c, ch) in all.enumerate() {
        for (i, x) in ch.iter().enumerate() {
            assert!(x.is_finite(), "{what}: output {c} sample {i} is {x}");
            assert!(
                *x == 0.0 || x.is_normal(),
                "{what}: output {c} sample {i} is denormal ({x:e})"
            );
        }
    }
}

/// Energy of `a − b` relative to the energy of `b`, in dB.
fn relative_error_db(a: &[f32], b: &[f32]) -> f64 {
    let (mut err, mut reference) = (0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        err += (f64::from(*x) - f64::from(*y)).powi(2);
        reference += f64::from(*y).powi(2);
    }
    10.0 * (err.max(1e-30) / reference.max(1e-30)).log10()
}

/// Σ of the aux outputs, per channel.
fn stem_sum(render: &Render) -> Vec<Vec<f32>> {
    let len = render.main[0].len();
    (0..2)
        .map(|c| {
            (0..len)
                .map(|i| render.aux.iter().map(|port| port[c][i]).sum())
                .collect()
        })
        .collect()
}

/// The event setting parameter `name` of `instance` to `value` (plain step or normalized).
fn set(instance: &mut PluginInstance<TestHost>, name: &str, value: f64) -> ParamValueEvent {
    ParamValueEvent::new(0, param_id(instance, name), Pckn::match_all(), value)
}

/// Quality = `iterations` (a step index: the range starts at 1).
fn iterations(instance: &mut PluginInstance<TestHost>, iterations: u32) -> ParamValueEvent {
    set(instance, "Quality (iterations)", f64::from(iterations - 1))
}

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
        "Objective",
        "MAP gamma",
        "Output mode",
        "Device",
    ] {
        assert!(params.contains(&name.to_string()), "missing {name}");
    }
}

#[test]
fn every_rate_and_block_size_is_clean_aligned_and_sums_to_the_input() {
    let _serial = serial();
    // One instance, re-activated for every configuration, as a DAW does when settings change.
    let mut instance = instance();
    let quick = iterations(&mut instance, 1);
    let mut first = true;
    for rate in [44_100.0f64, 48_000.0, 96_000.0] {
        for block in [1usize, 64, 512, 4096, 8192] {
            // Before its priors are loaded the plugin passes the mix through with silent stems;
            // the first activation gives the worker time to load them.
            let settle = std::time::Duration::from_secs(if first { 4 } else { 0 });
            first = false;
            let latency_expected = {
                let frame = (5.0 * rate).round() as usize;
                frame + frame - (0.5 * rate).round() as usize
            };
            // Past the latency by a little: the outputs then carry (wet or fallback) stems.
            let seconds = latency_expected as f64 / rate + if block == 1 { 0.2 } else { 1.0 };
            let input = signal(rate, seconds, 2);
            let out = render(
                &mut instance,
                &input,
                RenderSpec {
                    first_events: std::slice::from_ref(&quick),
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
    let quick = iterations(&mut instance, 1);
    let frame = (5.0 * rate) as usize;
    let latency_expected = 2 * frame - (0.5 * rate) as usize;
    let input = signal(rate, latency_expected as f64 / rate + 1.0, 1);
    let out = render(
        &mut instance,
        &input,
        RenderSpec {
            first_events: std::slice::from_ref(&quick),
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
    let quick = iterations(&mut instance, 2);
    let d = (5.0 * rate) as usize * 2 - (0.5 * rate) as usize;
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
        &mut instance,
        &input,
        RenderSpec {
            offline: true,
            first_events: &[quick],
            ..RenderSpec::new(rate, &[512])
        },
    );
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
    let frame = 220_500usize;
    let step = frame - 22_050;
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
        .args(["separate", "--quiet", "--iterations", "2", "-o"])
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
    let quick = iterations(&mut instance, 2);
    let d = frame + step;
    let padded = with_silence(input.clone(), d);
    let out = render(
        &mut instance,
        &padded,
        RenderSpec {
            offline: true,
            first_events: &[quick],
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
            let (id, _, _) = params
                .iter()
                .find(|(_, n, _)| n == "Quality (iterations)")
                .unwrap();
            events.push(ParamValueEvent::new(0, *id, Pckn::match_all(), 0.0));
        }
        for _ in 0..next() % 4 {
            let (id, name, max) = &params[next() as usize % params.len()];
            if name == "Quality (iterations)" {
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
    let d = 220_500 + 198_450;
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
