//! The in-repo CLAP host (clack-host) that `tests/clap_host.rs` checks the plugin with and
//! `examples/realtime_pacing.rs` measures it with: host callbacks, loading the built plugin from a
//! temporary CLAP folder laid out like the bundle, parameters, and rendering a signal through it
//! in blocks (optionally offline, with events, or paced to the wall clock as a DAW plays).

// Not every user of this module calls every helper.
#![allow(dead_code)]
// Sample loops over several buffers read best with an index.
#![allow(clippy::needless_range_loop)]

use clack_extensions::audio_ports::{AudioPortRescanFlags, HostAudioPorts, HostAudioPortsImpl};
use clack_extensions::gui::{GuiSize, HostGui, HostGuiImpl};
use clack_extensions::latency::{HostLatency, HostLatencyImpl, PluginLatency};
use clack_extensions::log::{HostLog, HostLogImpl, LogSeverity};
use clack_extensions::params::{
    HostParams, HostParamsImplMainThread, HostParamsImplShared, ParamClearFlags, ParamInfoBuffer,
    ParamRescanFlags, PluginParams,
};
use clack_extensions::render::{PluginRender, RenderMode};
use clack_extensions::state::{HostState, HostStateImpl};
use clack_host::events::event_types::ParamValueEvent;
use clack_host::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use stemflow::engine::search::settings::LIVE_FRAME_SECONDS;
use stemflow::engine::search::stream_framing::{DEFAULT_PROCESSING_ALLOWANCE_SECONDS, PROCESSING_ALLOWANCE};

pub const PLUGIN_ID: &std::ffi::CStr = c"org.stemflow.stemflow";
pub const SLOTS: usize = 8;
pub const SLOT_NAMES: [&str; SLOTS] = [
    "Bass", "Drums", "Guitar", "Piano", "Spare 1", "Spare 2", "Spare 3", "Spare 4",
];
pub const SHIPPED: [&str; 4] = ["bass", "drums", "guitar", "piano"];
/// Set in the child process that runs without an ONNX Runtime.
pub const NO_RUNTIME_CHILD: &str = "STEMFLOW_TEST_NO_RUNTIME_CHILD";

/// Set (to a priors folder) in the child process of a fault test: the bundle gets those priors
/// instead of the shipped ones. Read by this host, never by the plugin.
pub const BUNDLE_PRIORS_CHILD: &str = "STEMFLOW_TEST_BUNDLE_PRIORS";

// ---------------------------------------------------------------------------------------------
// The host.

#[derive(Default)]
pub struct Shared {
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

pub struct MainThread;

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

pub struct TestHost;

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
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// The cdylib cargo built with this binary: `target/<profile>/deps/libstemflow.so` beside a test
/// binary (built in the same cargo invocation; the copy one level up is only refreshed by `cargo
/// build`), or `target/<profile>/libstemflow.so` for an example in `target/<profile>/examples`.
pub fn built_library() -> PathBuf {
    let exe = std::env::current_exe().expect("binary path");
    let dir = exe.parent().expect("target/<profile>/deps or examples");
    let name = format!(
        "{}stemflow{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    let candidates = [dir.join(&name), dir.join("..").join(&name)];
    let library = candidates.iter().find(|c| c.is_file());
    library
        .unwrap_or_else(|| panic!("{} was not built", candidates[0].display()))
        .clone()
}

/// Where `cargo xtask setup` installed the runtime (read before the test hides it).
pub fn set_up_runtime() -> PathBuf {
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
pub fn entry() -> &'static PluginEntry {
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
            let priors = std::env::var_os(BUNDLE_PRIORS_CHILD)
                .map(PathBuf::from)
                .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("models/priors"));
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

pub fn host_info() -> HostInfo {
    HostInfo::new(
        "stemflow-test-host",
        "Stemflow",
        "https://stemflow.invalid",
        "1.0",
    )
    .unwrap()
}

pub fn instance() -> PluginInstance<TestHost> {
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
pub fn param_list(instance: &mut PluginInstance<TestHost>) -> Vec<(ClapId, String, f64)> {
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

pub fn param_id(instance: &mut PluginInstance<TestHost>, name: &str) -> ClapId {
    param_list(instance)
        .into_iter()
        .find(|(_, n, _)| n == name)
        .unwrap_or_else(|| panic!("no parameter named {name}"))
        .0
}

pub fn param_values(instance: &mut PluginInstance<TestHost>) -> Vec<(String, f64)> {
    let list = param_list(instance);
    let handle = instance.plugin_handle();
    let params: PluginParams = handle.get_extension().unwrap();
    list.into_iter()
        .map(|(id, name, _)| (name, params.get_value(&handle, id).unwrap()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Rendering.

pub struct Render {
    pub latency: usize,
    /// Main output, per channel.
    pub main: Vec<Vec<f32>>,
    /// Aux outputs: slot × channel.
    pub aux: Vec<Vec<Vec<f32>>>,
}

pub struct RenderSpec<'a> {
    pub rate: f64,
    /// Block sizes, used in turn (a single entry: fixed blocks).
    pub blocks: &'a [usize],
    pub offline: bool,
    /// Events sent with the first block.
    pub first_events: &'a [ParamValueEvent],
    /// Called before every block with the block index; returns events for that block.
    pub fuzz: Option<&'a mut dyn FnMut(usize) -> Vec<ParamValueEvent>>,
    /// Wall time to wait after starting to process (lets the worker load its priors).
    pub settle: std::time::Duration,
    /// Hand each block to the plugin no earlier than its time in the signal, counted on the
    /// wall clock from the start of processing, as a DAW playing in real time does.
    pub paced: bool,
    /// Reset the plugin (as a host does on a transport jump) before every this many blocks.
    pub reset_every: Option<usize>,
}

impl<'a> RenderSpec<'a> {
    /// Realtime at `rate` in `blocks`, with no events, no fuzz and no wait; tests override the
    /// fields they need (`offline`, `first_events`, ...) with struct-update syntax.
    pub fn new(rate: f64, blocks: &'a [usize]) -> Self {
        RenderSpec {
            rate,
            blocks,
            offline: false,
            first_events: &[],
            fuzz: None,
            settle: std::time::Duration::ZERO,
            paced: false,
            reset_every: None,
        }
    }
}

pub fn render(instance: &mut PluginInstance<TestHost>, input: &[Vec<f32>], spec: RenderSpec) -> Render {
    let RenderSpec {
        rate,
        blocks,
        offline,
        first_events,
        mut fuzz,
        settle,
        paced,
        reset_every,
    } = spec;
    let max_block = *blocks.iter().max().unwrap();
    {
        let handle = instance.plugin_handle();
        let render: PluginRender = handle.get_extension().expect("render extension");
        let mode = if offline {
            RenderMode::Offline
        } else {
            RenderMode::Realtime
        };
        render.set(&handle, mode).expect("render mode accepted");
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
    let started = std::time::Instant::now();
    while pos < total {
        let n = blocks[block_index % blocks.len()].min(total - pos);
        if paced {
            let due = std::time::Duration::from_secs_f64(pos as f64 / rate);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        if reset_every.is_some_and(|every| block_index > 0 && block_index % every == 0) {
            processor.reset();
        }
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
pub fn signal(rate: f64, seconds: f64, channels: usize) -> Vec<Vec<f32>> {
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

pub fn with_silence(mut input: Vec<Vec<f32>>, extra: usize) -> Vec<Vec<f32>> {
    for ch in &mut input {
        ch.extend(std::iter::repeat_n(0.0, extra));
    }
    input
}

pub fn assert_clean(render: &Render, what: &str) {
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
pub fn relative_error_db(a: &[f32], b: &[f32]) -> f64 {
    let (mut err, mut reference) = (0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        err += (f64::from(*x) - f64::from(*y)).powi(2);
        reference += f64::from(*y).powi(2);
    }
    10.0 * (err.max(1e-30) / reference.max(1e-30)).log10()
}

/// Σ of the aux outputs, per channel.
pub fn stem_sum(render: &Render) -> Vec<Vec<f32>> {
    let len = render.main[0].len();
    (0..2)
        .map(|c| {
            (0..len)
                .map(|i| render.aux.iter().map(|port| port[c][i]).sum())
                .collect()
        })
        .collect()
}

/// The latency the plugin reports at `rate` with the default processing allowance: the default
/// frame plus the allowance.
pub fn default_latency(rate: f64) -> usize {
    latency_with(rate, DEFAULT_PROCESSING_ALLOWANCE_SECONDS)
}

/// The latency at `rate` with a processing allowance of `allowance` seconds.
pub fn latency_with(rate: f64, allowance: f64) -> usize {
    (LIVE_FRAME_SECONDS * rate).round() as usize + (allowance * rate).round() as usize
}

/// The event setting the processing allowance to `seconds` (within the parameter's range,
/// normalized).
pub fn allowance(instance: &mut PluginInstance<TestHost>, seconds: f64) -> ParamValueEvent {
    let range = PROCESSING_ALLOWANCE;
    set(
        instance,
        "Processing allowance",
        (seconds - range.min) / (range.max - range.min),
    )
}

/// The event setting parameter `name` of `instance` to `value` (plain step or normalized).
pub fn set(instance: &mut PluginInstance<TestHost>, name: &str, value: f64) -> ParamValueEvent {
    ParamValueEvent::new(0, param_id(instance, name), Pckn::match_all(), value)
}

/// Quality = `iterations` (a step index: the range starts at 1).
pub fn iterations(instance: &mut PluginInstance<TestHost>, iterations: u32) -> ParamValueEvent {
    set(instance, "Quality (iterations)", f64::from(iterations - 1))
}

/// Both quality knobs (offline and realtime) at `iterations`, so a test's frames are short in
/// either render mode.
pub fn quick(instance: &mut PluginInstance<TestHost>, iterations: u32) -> [ParamValueEvent; 2] {
    [
        self::iterations(instance, iterations),
        set(
            instance,
            "Realtime quality (iterations)",
            f64::from(iterations - 1),
        ),
    ]
}
