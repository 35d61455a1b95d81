//! The egui editor: the worker's status (priors loaded or why not, backend, keeping up or behind,
//! real-time factor) and the frame in work; a strip per stem (output slot, stem, gain, mute,
//! solo, a level meter with a dB scale and the last 8 s of its level), a row for the main mix;
//! the separation settings as sliders and segmented choices. Meters and status come through
//! atomics; the only locks it takes are shared with the worker, never with the audio thread.
//!
//! Only glyphs of egui's default fonts are used (it has no arrows or bullets): anything else
//! draws as a box.

use super::params::{chosen, is_on, StemflowParams, DEVICES, FAST_RENDERS, MODES, OBJECTIVES, SEPARATORS};
use super::slots::{SHIPPED_STEMS, SLOT_COUNT, SLOT_NAMES};
use super::status::{Status, WorkerState, HISTORY, HISTORY_STEP_SECONDS};
use crate::engine::search::settings::LIVE_FRAME_SECONDS;
use crate::engine::search::stream_framing::HOP_SECONDS;
use egui::{pos2, vec2, Align2, Color32, FontId, Rect, RichText, Sense, Stroke, Ui};
use nice_plug::context::gui::GuiContext;
use nice_plug::editor::dpi::LogicalSize;
use nice_plug::prelude::{FloatParam, ParamSetter};
use nice_plug_egui::widgets::ParamSlider;
use nice_plug_egui::{create_egui_editor, EguiEditor, EguiEditorState, EguiNiceSettings, NiceEguiApp};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The editor's window size state (not persisted: `EguiEditorState` is not serde).
pub fn default_state() -> Arc<EguiEditorState> {
    EguiEditorState::from_size(LogicalSize::new(820.0, 510.0), 1.0)
}

/// Bottom of the meters' and histories' scale, in dB.
const FLOOR_DB: f32 = -60.0;
/// Top of the scale, in dB: some headroom above full scale, so overs show.
const CEIL_DB: f32 = 6.0;
/// Where the meters' scale is marked, in dB.
const TICKS_DB: [f32; 6] = [-48.0, -36.0, -24.0, -12.0, -6.0, 0.0];
/// Levels from here up are drawn amber, and above 0 dB red.
const HOT_DB: f32 = -12.0;
/// Width of a level meter.
const METER_WIDTH: f32 = 170.0;
/// Height of a strip row's meter and history.
const ROW_HEIGHT: f32 = 16.0;
/// Width the history column gets at least.
const HISTORY_MIN_WIDTH: f32 = 120.0;
/// About how wide the strip columns before the history are: the history takes the rest.
const COLUMNS_BEFORE_HISTORY: f32 = 640.0;

/// Meter colour up to [`HOT_DB`]; also a worker that keeps up, and a solo that is on.
const GREEN: Color32 = Color32::from_rgb(80, 190, 110);
/// Meter colour from [`HOT_DB`] to 0 dB; also a worker loading, and a mute that is on.
const AMBER: Color32 = Color32::from_rgb(230, 170, 60);
/// Meter colour above 0 dB; also a worker behind or failed.
const RED: Color32 = Color32::from_rgb(225, 80, 70);
/// A worker not active yet.
const GREY: Color32 = Color32::from_rgb(140, 140, 140);

/// History colour of each slot (the shipped stems, then the spares), so a stem keeps its colour.
const SLOT_COLOURS: [Color32; SLOT_COUNT] = [
    Color32::from_rgb(90, 150, 230),
    Color32::from_rgb(230, 140, 70),
    Color32::from_rgb(110, 200, 120),
    Color32::from_rgb(190, 120, 220),
    Color32::from_rgb(200, 200, 110),
    Color32::from_rgb(110, 200, 200),
    Color32::from_rgb(220, 120, 150),
    Color32::from_rgb(170, 170, 170),
];
/// History colour of the main mix.
const MIX_COLOUR: Color32 = Color32::from_rgb(220, 220, 220);

/// The egui app.
pub struct StemflowApp {
    params: Arc<StemflowParams>,
    status: Arc<Status>,
    context: Option<GuiContext>,
}

/// The editor for these parameters and this status.
pub fn create(
    params: Arc<StemflowParams>,
    status: Arc<Status>,
    state: Arc<EguiEditorState>,
) -> Option<EguiEditor<StemflowApp>> {
    let settings = EguiNiceSettings {
        title: "Stemflow".into(),
        ..Default::default()
    };
    create_egui_editor(
        state,
        Default::default(),
        settings,
        StemflowApp {
            params,
            status,
            context: None,
        },
    )
}

/// A linear level in dB (−120 dB for silence).
fn db(level: f32) -> f32 {
    20.0 * level.max(1e-6).log10()
}

/// Where `db` sits on the meters' scale, 0 (floor) to 1 (top).
fn scale_position(db: f32) -> f32 {
    ((db - FLOOR_DB) / (CEIL_DB - FLOOR_DB)).clamp(0.0, 1.0)
}

/// A level as text beside its meter.
fn db_text(level: f32) -> String {
    let value = db(level);
    if value <= -100.0 {
        "silent".to_string()
    } else {
        format!("{value:.1} dB")
    }
}

impl NiceEguiApp for StemflowApp {
    fn build(
        &mut self,
        egui_ctx: egui::Context,
        nice_gui_ctx: GuiContext,
        _frame: &mut nice_plug_egui::Frame,
    ) -> Result<(), nice_plug_egui::baseview::HandlerError> {
        let _ = egui_ctx;
        self.context = Some(nice_gui_ctx);
        Ok(())
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut nice_plug_egui::Frame) {
        ui.ctx()
            .request_repaint_after(std::time::Duration::from_millis(50));
        egui::CentralPanel::default().show(ui, |ui| {
            let Some(context) = self.context.as_ref() else {
                ui.heading("Stemflow");
                return;
            };
            let setter = context.param_setter();
            // Eight strips fit the default size; a smaller window scrolls instead of cutting off.
            egui::ScrollArea::vertical().show(ui, |ui| {
                header(ui, &self.status);
                worker_line(ui, &self.status);
                frame_line(ui, &self.status);
                ui.separator();
                strips(ui, &self.params, &self.status, &setter);
                ui.separator();
                settings(ui, &self.params, &self.status, &setter);
            });
        });
    }
}

/// The worker's state in a few words, and its colour: "keeping up" only once frames have been
/// separated in time.
fn state_summary(status: &Status) -> (Color32, &'static str) {
    let separated = status.frames_done.load(Ordering::Relaxed) > 0;
    match status.state() {
        WorkerState::Idle => (GREY, "not active"),
        WorkerState::Loading => (AMBER, "loading priors…"),
        WorkerState::Ready if status.render_detected.load(Ordering::Relaxed) => {
            (GREEN, "rendering faster than real time: waiting for every frame")
        }
        WorkerState::Ready if status.rendering_offline.load(Ordering::Relaxed) => {
            (GREEN, "rendering offline: waiting for every frame")
        }
        WorkerState::Ready if status.behind.load(Ordering::Relaxed) => (
            RED,
            "BEHIND: playing the dry mix; fewer playback iterations keep up sooner",
        ),
        WorkerState::Ready if separated => (GREEN, "separating, keeping up"),
        WorkerState::Ready => (GREY, "ready: no frame separated yet"),
        WorkerState::Failed => (RED, "not separating: passing audio through"),
    }
}

/// Title and the worker's state.
fn header(ui: &mut Ui, status: &Status) {
    let (colour, text) = state_summary(status);
    ui.horizontal(|ui| {
        ui.heading("Stemflow");
        ui.add_space(16.0);
        let (dot, _) = ui.allocate_exact_size(vec2(12.0, 12.0), Sense::hover());
        ui.painter().circle_filled(dot.center(), 5.0, colour);
        ui.label(RichText::new(text).color(colour).strong());
    });
}

/// Backend, real-time factor, counts and latency, then the worker's message (what is loaded, or
/// why not).
fn worker_line(ui: &mut Ui, status: &Status) {
    let ready = status.state() == WorkerState::Ready;
    let backend = match status.backend.load(Ordering::Relaxed) {
        1 => "CUDA",
        2 => "DirectML",
        _ => "CPU",
    };
    let frames = status.frames_done.load(Ordering::Relaxed);
    let rtf = if ready && frames > 0 {
        format!("{:.2}", status.real_time_factor.load(Ordering::Relaxed))
    } else {
        "–".to_string()
    };
    let latency = status.latency_seconds.load(Ordering::Relaxed);
    ui.horizontal_wrapped(|ui| {
        ui.label(format!("Backend {}", if ready { backend } else { "–" }));
        ui.label(RichText::new("·").weak());
        ui.label(format!("real-time factor {rtf}")).on_hover_text(format!(
            "Worker time per frame / {HOP_SECONDS}-s hop. Playback keeps up while a frame takes \
             less than the processing allowance."
        ));
        ui.label(RichText::new("·").weak());
        ui.label(format!("frames separated {frames}"));
        ui.label(RichText::new("·").weak());
        ui.label(format!(
            "segments played dry {}",
            status.late_segments.load(Ordering::Relaxed)
        ));
        ui.label(RichText::new("·").weak());
        ui.label(format!("latency {latency:.1} s"))
            .on_hover_text("Separated audio comes out this long after the input goes in.");
    });
    ui.label(RichText::new(status.message()).small().weak());
}

/// Where frame `index` starts, in seconds of the stream (of the host's timeline while it plays):
/// frames are numbered by position, not counted, so this says which audio is meant.
fn frame_start_seconds(index: u64) -> f64 {
    index as f64 * HOP_SECONDS
}

/// What the worker is doing with the frame in work, as a bar and a line of text.
fn frame_line(ui: &mut Ui, status: &Status) {
    let (iteration, total) = (status.frame_progress.iteration(), status.frame_progress.total());
    let index = status.frame_index.load(Ordering::Relaxed);
    let frames = status.frames_done.load(Ordering::Relaxed);
    let latency = status.latency_seconds.load(Ordering::Relaxed);
    let (fraction, text) = match status.state() {
        WorkerState::Idle => (0.0, "waiting for audio".to_string()),
        WorkerState::Loading => (0.0, "waiting for the priors to load".to_string()),
        WorkerState::Failed => (0.0, "no frame: nothing is separated".to_string()),
        WorkerState::Ready if status.separating.load(Ordering::Relaxed) && total > 0 => (
            iteration as f32 / total as f32,
            format!(
                "frame at {:.1} s: iteration {iteration} of {total}",
                frame_start_seconds(index)
            ),
        ),
        WorkerState::Ready if frames == 0 => (
            0.0,
            format!(
                "waiting for the first {LIVE_FRAME_SECONDS} s of audio (separated output starts {latency:.1} s after the input)"
            ),
        ),
        WorkerState::Ready => (
            0.0,
            format!(
                "frame at {:.1} s done; waiting for the next {HOP_SECONDS} s of audio",
                frame_start_seconds(index)
            ),
        ),
    };
    ui.horizontal(|ui| {
        ui.label("Frame in work");
        let width = ui.available_width().max(100.0);
        let (rect, _) = ui.allocate_exact_size(vec2(width, 18.0), Sense::hover());
        let painter = ui.painter_at(rect);
        painter.rect_filled(rect, 3.0, ui.visuals().extreme_bg_color);
        let filled = Rect::from_min_max(
            rect.min,
            pos2(
                rect.left() + rect.width() * fraction.clamp(0.0, 1.0),
                rect.bottom(),
            ),
        );
        painter.rect_filled(filled, 3.0, ui.visuals().selection.bg_fill);
        painter.text(
            rect.left_center() + vec2(8.0, 0.0),
            Align2::LEFT_CENTER,
            text,
            FontId::proportional(12.0),
            ui.visuals().strong_text_color(),
        );
    });
}

/// The slots that get a strip: those a loaded prior feeds, or the shipped stems' slots before
/// any prior is loaded.
fn shown_slots(stems: &[String; SLOT_COUNT]) -> Vec<usize> {
    let fed: Vec<usize> = (0..SLOT_COUNT).filter(|&s| !stems[s].is_empty()).collect();
    if fed.is_empty() {
        (0..SHIPPED_STEMS.len()).collect()
    } else {
        fed
    }
}

/// One strip per stem, then the main mix, with a dB scale over the meters.
fn strips(ui: &mut Ui, params: &StemflowParams, status: &Status, setter: &ParamSetter) {
    let stems = status.slot_stems.lock().map(|s| s.clone()).unwrap_or_default();
    let shown = shown_slots(&stems);
    let history_width = (ui.available_width() - COLUMNS_BEFORE_HISTORY).max(HISTORY_MIN_WIDTH);
    let history_pos = status.history_pos.load(Ordering::Acquire);
    ui.label(
        RichText::new(
            "Meters: peak of each stem's own output, before its gain (gain, mute and solo shape \
             only the main mix).",
        )
        .small()
        .weak(),
    );
    egui::Grid::new("strips")
        .striped(true)
        .spacing([8.0, 2.0])
        .show(ui, |ui| {
            ui.label(RichText::new("Output").strong());
            ui.label(RichText::new("Stem").strong());
            ui.label(RichText::new("Gain in mix").strong());
            ui.label("");
            ui.label("");
            scale(ui);
            ui.label(RichText::new("Level").strong());
            ui.label(RichText::new(format!("Last {:.0} s", HISTORY as f32 * HISTORY_STEP_SECONDS)).strong());
            ui.end_row();
            for &slot in &shown {
                let strip = &params.strips[slot];
                ui.label(SLOT_NAMES[slot]);
                if stems[slot].is_empty() {
                    ui.label(RichText::new("none").weak());
                } else {
                    ui.label(RichText::new(&stems[slot]).color(SLOT_COLOURS[slot]));
                }
                ui.add(ParamSlider::for_param(&strip.gain, setter).with_width(130.0));
                toggle(
                    ui,
                    setter,
                    &strip.mute,
                    "M",
                    AMBER,
                    &format!("Mute {} in the main mix", SLOT_NAMES[slot]),
                );
                toggle(
                    ui,
                    setter,
                    &strip.solo,
                    "S",
                    GREEN,
                    &format!("Solo {} in the main mix", SLOT_NAMES[slot]),
                );
                let level = status.meters[slot].load(Ordering::Relaxed);
                meter(ui, level);
                ui.label(RichText::new(db_text(level)).monospace());
                history(
                    ui,
                    &status.stem_history[slot],
                    history_pos,
                    history_width,
                    SLOT_COLOURS[slot],
                );
                ui.end_row();
            }
            ui.label(RichText::new("Main").strong());
            ui.label(RichText::new("mix").strong());
            ui.label(RichText::new("after gain, mute, solo").weak());
            ui.label("");
            ui.label("");
            let level = status.main_meter.load(Ordering::Relaxed);
            meter(ui, level);
            ui.label(RichText::new(db_text(level)).monospace());
            history(ui, &status.history, history_pos, history_width, MIX_COLOUR);
            ui.end_row();
        });
    let hidden: Vec<&str> = (0..SLOT_COUNT)
        .filter(|s| !shown.contains(s))
        .map(|s| SLOT_NAMES[s])
        .collect();
    if !hidden.is_empty() {
        ui.label(
            RichText::new(format!(
                "Unused outputs: {} (no prior feeds them; stemflow train-prior trains one).",
                hidden.join(", ")
            ))
            .small()
            .weak(),
        );
    }
}

/// The dB scale over the meter column.
fn scale(ui: &mut Ui) {
    let (rect, _) = ui.allocate_exact_size(vec2(METER_WIDTH, ROW_HEIGHT), Sense::hover());
    let painter = ui.painter_at(rect);
    let colour = ui.visuals().weak_text_color();
    for tick in TICKS_DB {
        let x = rect.left() + rect.width() * scale_position(tick);
        painter.line_segment(
            [pos2(x, rect.bottom() - 3.0), pos2(x, rect.bottom())],
            Stroke::new(1.0, colour),
        );
        painter.text(
            pos2(x, rect.bottom() - 4.0),
            Align2::CENTER_BOTTOM,
            format!("{tick:.0}"),
            FontId::proportional(10.0),
            colour,
        );
    }
}

/// A horizontal peak meter: green up to [`HOT_DB`], amber to 0 dB, red above, with the scale's
/// marks across it.
fn meter(ui: &mut Ui, level: f32) {
    let (rect, _) = ui.allocate_exact_size(vec2(METER_WIDTH, ROW_HEIGHT), Sense::hover());
    let painter = ui.painter_at(rect);
    let bar = rect.shrink2(vec2(0.0, 3.0));
    painter.rect_filled(bar, 2.0, ui.visuals().extreme_bg_color);
    let x_at = |db: f32| bar.left() + bar.width() * scale_position(db);
    let top = x_at(db(level));
    for (from, to, colour) in [
        (FLOOR_DB, HOT_DB, GREEN),
        (HOT_DB, 0.0, AMBER),
        (0.0, CEIL_DB, RED),
    ] {
        let (left, right) = (x_at(from), x_at(to).min(top));
        if right > left {
            painter.rect_filled(
                Rect::from_min_max(pos2(left, bar.top()), pos2(right, bar.bottom())),
                0.0,
                colour,
            );
        }
    }
    let mark = ui.visuals().window_fill;
    for tick in TICKS_DB {
        let x = x_at(tick);
        painter.line_segment(
            [pos2(x, bar.top()), pos2(x, bar.bottom())],
            Stroke::new(1.0, mark),
        );
    }
}

/// The last [`HISTORY`] entries of a level ring (oldest left), as bars on the meters' dB scale.
fn history(ui: &mut Ui, ring: &[atomic_float::AtomicF32; HISTORY], pos: usize, width: f32, colour: Color32) {
    let (rect, _) = ui.allocate_exact_size(vec2(width, ROW_HEIGHT), Sense::hover());
    let painter = ui.painter_at(rect);
    painter.rect_filled(rect, 2.0, ui.visuals().extreme_bg_color);
    let step = rect.width() / HISTORY as f32;
    for i in 0..HISTORY {
        let level = ring[(pos + i) % HISTORY].load(Ordering::Relaxed);
        let height = scale_position(db(level)) * rect.height();
        if height <= 0.0 {
            continue;
        }
        let x = rect.left() + i as f32 * step;
        painter.rect_filled(
            Rect::from_min_max(
                pos2(x, rect.bottom() - height),
                pos2(x + step.max(1.0), rect.bottom()),
            ),
            0.0,
            colour,
        );
    }
}

/// A mute or solo switch: highlighted in `colour` while on.
fn toggle(ui: &mut Ui, setter: &ParamSetter, param: &FloatParam, text: &str, colour: Color32, hint: &str) {
    let on = is_on(param);
    let label = if on {
        RichText::new(text).strong().color(Color32::BLACK)
    } else {
        RichText::new(text)
    };
    let mut button = egui::Button::new(label).min_size(vec2(22.0, 18.0));
    if on {
        button = button.fill(colour);
    }
    if ui.add(button).on_hover_text(hint).clicked() {
        setter.begin_set_parameter(param);
        setter.set_parameter(param, if on { 0.0 } else { 1.0 });
        setter.end_set_parameter(param);
    }
}

/// A choice parameter as a row of buttons, the chosen one highlighted; a click sets it.
fn segmented(ui: &mut Ui, setter: &ParamSetter, param: &FloatParam, names: &[&str]) {
    let current = chosen(param).min(names.len() - 1);
    ui.horizontal(|ui| {
        ui.spacing_mut().item_spacing.x = 2.0;
        for (i, name) in names.iter().enumerate() {
            if ui.add(egui::Button::new(*name).selected(i == current)).clicked() && i != current {
                setter.begin_set_parameter(param);
                setter.set_parameter(param, i as f32);
                setter.end_set_parameter(param);
            }
        }
    });
}

/// The separation settings: iterations for playback and for a render, separator and NMF weight,
/// objective and γ, output mode and device, and the processing allowance.
fn settings(ui: &mut Ui, params: &StemflowParams, status: &Status, setter: &ParamSetter) {
    ui.label(RichText::new("Separation").strong());
    egui::Grid::new("settings")
        .num_columns(4)
        .spacing([12.0, 6.0])
        .show(ui, |ui| {
            ui.label("Iterations, playback");
            ui.add(ParamSlider::for_param(&params.realtime_iterations, setter).with_width(150.0));
            ui.label("Iterations, offline render");
            ui.add(ParamSlider::for_param(&params.iterations, setter).with_width(150.0));
            ui.end_row();

            ui.label("Separator");
            segmented(ui, setter, &params.separator, SEPARATORS);
            ui.end_row();

            let hint = "0: the flows' masks alone; 1: the NMF dictionaries' alone.";
            ui.label("NMF weight, playback");
            ui.add(ParamSlider::for_param(&params.realtime_nmf_weight, setter).with_width(150.0))
                .on_hover_text(hint);
            ui.label("NMF weight, offline render");
            ui.add(ParamSlider::for_param(&params.nmf_weight, setter).with_width(150.0))
                .on_hover_text(hint);
            ui.end_row();

            ui.label("Objective");
            segmented(ui, setter, &params.objective, OBJECTIVES);
            ui.label("MAP weight γ");
            let map = chosen(&params.objective) > 0;
            ui.add_enabled(
                map,
                ParamSlider::for_param(&params.gamma, setter).with_width(150.0),
            )
            .on_disabled_hover_text("Used by the MAP objective only.");
            ui.end_row();

            ui.label("Output");
            segmented(ui, setter, &params.mode, MODES);
            ui.label("Device");
            segmented(ui, setter, &params.device, DEVICES);
            ui.end_row();

            allowance_row(ui, params, status, setter);
            ui.end_row();

            ui.label("Faster-than-realtime render").on_hover_text(
                "A host that renders faster than real time while it says it plays in real \
                     time (Ardour's track bounce): wait for every frame, or play late frames dry.",
            );
            segmented(ui, setter, &params.fast_render, FAST_RENDERS);
            ui.end_row();
        });
}

/// The processing allowance and, when it differs from the one the host activated the plugin
/// with, a button asking the host to restart processing so the new latency applies.
fn allowance_row(ui: &mut Ui, params: &StemflowParams, status: &Status, setter: &ParamSetter) {
    ui.label("Processing allowance");
    ui.add(ParamSlider::for_param(&params.processing_allowance, setter).with_width(150.0))
        .on_hover_text(
            "The worker's time per frame in real time; the latency is the frame plus this. \
             Lower it while the real-time factor leaves room, for less latency.",
        );
    let active = status.allowance_seconds.load(Ordering::Relaxed);
    let wanted = params.processing_allowance.value();
    if active > 0.0 && (wanted - active).abs() > 0.05 {
        let text = format!("now {active:.1} s: apply");
        if ui
            .button(text)
            .on_hover_text("Asks the host to restart the plugin's processing with the new latency.")
            .clicked()
        {
            setter.raw_context.request_restart();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scale_runs_from_floor_to_top() {
        assert_eq!(scale_position(FLOOR_DB - 30.0), 0.0);
        assert_eq!(scale_position(CEIL_DB + 3.0), 1.0);
        assert!(scale_position(0.0) > scale_position(-12.0));
        assert_eq!(db_text(0.0), "silent");
        assert_eq!(db_text(0.5), "-6.0 dB");
    }

    #[test]
    fn strips_follow_the_loaded_priors() {
        let mut stems: [String; SLOT_COUNT] = std::array::from_fn(|_| String::new());
        assert_eq!(shown_slots(&stems), vec![0, 1, 2, 3]);
        stems[1] = "drums".into();
        stems[4] = "strings".into();
        assert_eq!(shown_slots(&stems), vec![1, 4]);
    }
}
