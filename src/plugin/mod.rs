//! The CLAP/VST3 plugin: the engine inside a DAW, one auxiliary output per stem.
//!
//! - [`slots`]: the fixed output ports and which prior feeds which.
//! - [`audio_panic`]: a panic on the audio thread without the panic hook's allocation and lock.
//! - [`params`]: gains, mutes, solos and the separation settings; state migration.
//! - [`host_clock`]: the host's mode and timeline block by block (offline renders, transport
//!   starts and jumps, renders faster than real time).
//! - [`queues`]: input frames and output segments passed through lock-free queues.
//! - [`stream`]: the audio thread's half (no allocation, lock or wait in realtime mode).
//! - [`worker`]: the thread that owns the priors and the [`Separator`](crate::engine::search::separator::Separator).
//! - [`status`]: atomics the editor reads; [`editor`]: the egui editor.
//! - [`locate`]: the plugin binary's own folder, where the bundle keeps the runtime and priors.
//! - `standalone` (feature `standalone`): the plugin and its editor as an application, playing
//!   the audio input or a file.

pub mod audio_panic;
pub mod editor;
pub mod host_clock;
pub mod locate;
pub mod params;
pub mod queues;
pub mod slots;
#[cfg(feature = "standalone")]
pub mod standalone;
pub mod status;
pub mod stream;
pub mod watchdog;
pub mod worker;

use crate::engine::limits::{MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, SAMPLE_RATES};
use host_clock::{HostBlock, HostClock, Transition};
use nice_plug::prelude::*;
use nice_plug_egui::EguiEditorState;
use params::StemflowParams;
use queues::Link;
use slots::{SLOT_COUNT, SLOT_NAMES};
use status::Status;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use stream::Stream;
use worker::{Command, WorkerHandle};

/// The plugin.
pub struct Stemflow {
    params: Arc<StemflowParams>,
    status: Arc<Status>,
    worker: Option<WorkerHandle>,
    stream: Option<Stream>,
    /// What the host does block by block (offline, timeline, pace).
    clock: HostClock,
    editor_state: Arc<EguiEditorState>,
}

impl Default for Stemflow {
    fn default() -> Self {
        audio_panic::install_hook();
        Stemflow {
            params: Arc::new(StemflowParams::default()),
            status: Arc::new(Status::default()),
            worker: None,
            stream: None,
            clock: HostClock::new(false, 44_100.0),
            editor_state: editor::default_state(),
        }
    }
}

impl Stemflow {
    /// Ends the current activation's link, if any (main thread).
    fn close_stream(&mut self) {
        if let Some(stream) = self.stream.take() {
            stream.link().closed.store(true, Ordering::Release);
            if let Some(worker) = &self.worker {
                worker.send(Command::Detach);
            }
        }
    }
}

const STEREO_AUX: [NonZeroU32; SLOT_COUNT] = [new_nonzero_u32(2); SLOT_COUNT];

impl Plugin for Stemflow {
    const NAME: &'static str = "Stemflow";
    const VENDOR: &'static str = "Stemflow";
    // The project has no web site or contact address of its own: hosts show none.
    const URL: &'static str = "";
    const EMAIL: &'static str = "";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    const AUDIO_IO_LAYOUTS: &'static [AudioIOLayout] = &[
        AudioIOLayout {
            main_input_channels: NonZeroU32::new(2),
            main_output_channels: NonZeroU32::new(2),
            aux_input_ports: &[],
            aux_output_ports: &STEREO_AUX,
            // nice-plug names the main output from `main_input` too.
            names: PortNames {
                layout: Some("Stereo"),
                main_input: Some("Mix"),
                main_output: Some("Mix"),
                aux_inputs: &[],
                aux_outputs: &SLOT_NAMES,
            },
        },
        AudioIOLayout {
            main_input_channels: NonZeroU32::new(1),
            main_output_channels: NonZeroU32::new(1),
            aux_input_ports: &[],
            aux_output_ports: &STEREO_AUX,
            names: PortNames {
                layout: Some("Mono"),
                main_input: Some("Mix"),
                main_output: Some("Mix"),
                aux_inputs: &[],
                aux_outputs: &SLOT_NAMES,
            },
        },
    ];

    // A host's parameter change lands on its own sample (nice-plug splits the block there),
    // so an automated gain follows the lane, not the block grid.
    const SAMPLE_ACCURATE_AUTOMATION: bool = true;

    type SysExMessage = ();
    type BackgroundTask = ();
    type Editor = nice_plug_egui::EguiEditor<editor::StemflowApp>;

    fn params(&self) -> Arc<dyn Params> {
        self.params.clone()
    }

    fn editor(&mut self, _async_executor: AsyncExecutor<Self>) -> Option<Self::Editor> {
        editor::create(
            self.params.clone(),
            self.status.clone(),
            self.editor_state.clone(),
        )
    }

    fn filter_state(state: &mut PluginState) {
        params::filter_state(state);
    }

    fn activate(
        &mut self,
        audio_io_layout: &AudioIOLayout,
        buffer_config: &BufferConfig,
        context: &mut impl ActivateContext<Self>,
    ) -> bool {
        let rate = buffer_config.sample_rate.round();
        if !SAMPLE_RATES.contains(f64::from(rate)) {
            // Outside what the engine separates at: activate anyway and pass the mix through.
            self.close_stream();
            context.set_latency_samples(0);
            self.status.set_message(format!(
                "sample rate {rate} Hz is outside {MIN_SAMPLE_RATE}–{MAX_SAMPLE_RATE} Hz: passing audio through"
            ));
            return true;
        }
        let rate = rate as u32;
        let channels = audio_io_layout
            .main_input_channels
            .map_or(2, NonZeroU32::get)
            .clamp(1, stream::MAX_CHANNELS as u32) as usize;
        let offline = renders_offline(buffer_config.process_mode);
        self.clock = HostClock::new(offline, f64::from(rate));
        self.close_stream();
        if self.worker.is_none() {
            let beside = locate::own_binary()
                .map(|b| locate::bundle_dirs(&b))
                .unwrap_or_default();
            self.worker = WorkerHandle::spawn(self.params.clone(), self.status.clone(), beside);
        }
        let worker_thread = self.worker.as_ref().and_then(WorkerHandle::thread);
        let allowance = f64::from(self.params.processing_allowance.value());
        let link = Arc::new(Link::new(rate, channels, offline, allowance, worker_thread));
        context.set_latency_samples(link.framing.latency as u32);
        self.status
            .latency_seconds
            .store(link.framing.latency as f32 / rate as f32, Ordering::Relaxed);
        self.status
            .allowance_seconds
            .store(link.framing.allowance as f32 / rate as f32, Ordering::Relaxed);
        self.stream = Some(Stream::new(link.clone(), self.status.clone()));
        if self.status.state() != status::WorkerState::Ready {
            // The worker is about to (re)load: an offline render waits for it.
            self.status.set_state(status::WorkerState::Loading);
        }
        match &self.worker {
            Some(worker) => worker.send(Command::Attach(link)),
            None => {
                // Nothing will separate: pass through, and an offline render does not wait.
                self.status
                    .set_message("could not start the worker thread; passing audio through");
                self.status.set_state(status::WorkerState::Failed);
            }
        }
        true
    }

    fn reset(&mut self) {
        if let Some(stream) = self.stream.as_mut() {
            stream.reset();
        }
        // The next playing block anchors the frames to the timeline again.
        self.clock.forget_position();
    }

    fn deactivate(&mut self) {
        self.close_stream();
    }

    fn process(
        &mut self,
        buffer: &mut Buffer,
        aux: &mut AuxiliaryBuffers,
        context: &mut impl ProcessContext<Self>,
    ) -> ProcessStatus {
        let Some(stream) = self.stream.as_mut() else {
            // Passing through (unsupported rate): the main output already holds the input.
            for port in aux.outputs.iter_mut() {
                for channel in port.as_slice().iter_mut() {
                    channel.fill(0.0);
                }
            }
            return ProcessStatus::Normal;
        };
        let params = &self.params;
        let block = host_block(context, buffer.samples());
        self.clock.set_detection(params.waits_for_fast_renders());
        match self.clock.observe(block, Instant::now()) {
            Transition::Continue => {}
            Transition::Restart { offline, timeline } => stream.restart(offline, timeline),
            Transition::FastRender { roll_start } => stream.fast_render(roll_start),
        }
        self.status
            .render_detected
            .store(self.clock.waiting_detected(), Ordering::Relaxed);
        let main = buffer.as_slice();
        let outputs = &mut *aux.outputs;
        let finished = audio_panic::process_block(|| stream.process(main, outputs, params));
        if !finished {
            for channel in buffer.as_slice().iter_mut() {
                channel.fill(0.0);
            }
            for port in aux.outputs.iter_mut() {
                for channel in port.as_slice().iter_mut() {
                    channel.fill(0.0);
                }
            }
        }
        ProcessStatus::KeepAlive
    }
}

/// Whether the host's `mode` is one the stream waits for every segment in: an offline render
/// or VST3's prefetch (a render ahead of playback, not paced by the audio device).
fn renders_offline(mode: ProcessMode) -> bool {
    matches!(mode, ProcessMode::Offline | ProcessMode::Buffered)
}

/// What the host says about the block it hands over in `context`.
fn host_block(context: &impl ProcessContext<Stemflow>, samples: usize) -> HostBlock {
    let transport = context.transport();
    HostBlock {
        offline: renders_offline(context.process_mode()),
        timeline: transport.pos_samples.filter(|_| transport.playing),
        samples,
    }
}

impl Drop for Stemflow {
    fn drop(&mut self) {
        self.close_stream();
        // Dropping the handle stops and joins the worker.
        self.worker = None;
    }
}

impl ClapPlugin for Stemflow {
    const CLAP_ID: &'static str = "org.stemflow.stemflow";
    const CLAP_DESCRIPTION: Option<&'static str> =
        Some("Separates a mix into stems with one Glow prior per instrument");
    const CLAP_MANUAL_URL: Option<&'static str> = None;
    const CLAP_SUPPORT_URL: Option<&'static str> = None;
    const CLAP_FEATURES: &'static [ClapFeature] = &[
        ClapFeature::AudioEffect,
        ClapFeature::Stereo,
        ClapFeature::Mono,
        ClapFeature::Utility,
    ];
}

impl Vst3Plugin for Stemflow {
    const VST3_CLASS_ID: [u8; 16] = *b"StemflowSepPlug1";
    const VST3_SUBCATEGORIES: &'static [Vst3SubCategory] = &[Vst3SubCategory::Fx, Vst3SubCategory::Tools];
}
