//! The egui editor: a strip per output slot (the stem feeding it, gain, mute, solo, level meter),
//! the separation settings, progress of the frame in work, the worker's status (priors loaded or
//! why not, backend, keeping up or behind, real-time factor) and a short level history. Meters
//! and status come through atomics; the only locks it takes are shared with the worker, never
//! with the audio thread.

use super::params::{is_on, StemflowParams};
use super::slots::{SLOT_COUNT, SLOT_NAMES};
use super::status::{Status, WorkerState, HISTORY};
use nice_plug::context::gui::GuiContext;
use nice_plug::editor::dpi::LogicalSize;
use nice_plug_egui::widgets::ParamSlider;
use nice_plug_egui::{create_egui_editor, EguiEditor, EguiEditorState, EguiNiceSettings, NiceEguiApp};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The editor's window size state (not persisted: `EguiEditorState` is not serde).
pub fn default_state() -> Arc<EguiEditorState> {
    EguiEditorState::from_size(LogicalSize::new(820.0, 480.0), 1.0)
}

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

fn db(level: f32) -> f32 {
    20.0 * level.max(1e-6).log10()
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
        let Some(context) = self.context.as_ref() else {
            ui.label("Stemflow");
            return;
        };
        let setter = context.param_setter();
        let params = &self.params;
        let status = &self.status;
        ui.heading("Stemflow");

        // Worker status.
        let state = status.state();
        let state_text = match state {
            WorkerState::Idle => "not active",
            WorkerState::Loading => "loading priors…",
            WorkerState::Ready if status.behind.load(Ordering::Relaxed) => "BEHIND: playing the dry mix",
            WorkerState::Ready => "keeping up",
            WorkerState::Failed => "passing audio through",
        };
        let backend = match status.backend.load(Ordering::Relaxed) {
            1 => "CUDA",
            2 => "DirectML",
            _ => "CPU",
        };
        ui.label(format!(
            "Status: {state_text} · backend {backend} · real-time factor {:.2} · frames {} · late {}",
            status.real_time_factor.load(Ordering::Relaxed),
            status.frames_done.load(Ordering::Relaxed),
            status.late_segments.load(Ordering::Relaxed),
        ));
        ui.label(status.message());
        let progress = status
            .frame_progress
            .lock()
            .ok()
            .and_then(|p| p.as_ref().map(|p| (p.iteration(), p.total())))
            .unwrap_or((0, 0));
        let fraction = if progress.1 > 0 {
            progress.0 as f32 / progress.1 as f32
        } else {
            0.0
        };
        ui.add(egui::ProgressBar::new(fraction.min(1.0)).text(format!(
            "frame in work: iteration {} / {}",
            progress.0, progress.1
        )));
        ui.separator();

        // Stem strips.
        let stems = status.slot_stems.lock().map(|s| s.clone()).unwrap_or_default();
        egui::Grid::new("strips").striped(true).show(ui, |ui| {
            ui.label("output");
            ui.label("stem");
            ui.label("gain");
            ui.label("mute");
            ui.label("solo");
            ui.label("level");
            ui.end_row();
            for slot in 0..SLOT_COUNT {
                let strip = &params.strips[slot];
                ui.label(SLOT_NAMES[slot]);
                ui.label(if stems[slot].is_empty() {
                    "—"
                } else {
                    stems[slot].as_str()
                });
                ui.add(ParamSlider::for_param(&strip.gain, &setter).with_width(140.0));
                toggle(ui, &setter, &strip.mute, "M");
                toggle(ui, &setter, &strip.solo, "S");
                let level = status.meters[slot].load(Ordering::Relaxed);
                let meter = ((db(level) + 60.0) / 60.0).clamp(0.0, 1.0);
                ui.add(
                    egui::ProgressBar::new(meter)
                        .desired_width(160.0)
                        .text(format!("{:.0} dB", db(level))),
                );
                ui.end_row();
            }
        });
        ui.separator();

        // Settings.
        ui.horizontal(|ui| {
            ui.label("Quality: render");
            ui.add(ParamSlider::for_param(&params.iterations, &setter).with_width(90.0));
            ui.label("realtime");
            ui.add(ParamSlider::for_param(&params.realtime_iterations, &setter).with_width(90.0));
        });
        ui.horizontal(|ui| {
            ui.label("Objective");
            ui.add(ParamSlider::for_param(&params.objective, &setter).with_width(70.0));
            ui.label("γ");
            ui.add(ParamSlider::for_param(&params.gamma, &setter).with_width(70.0));
        });
        ui.horizontal(|ui| {
            ui.label("Output");
            ui.add(ParamSlider::for_param(&params.mode, &setter).with_width(120.0));
            ui.label("Device");
            ui.add(ParamSlider::for_param(&params.device, &setter).with_width(90.0));
        });

        // Level history of the main output.
        let pos = status.history_pos.load(Ordering::Relaxed);
        let (rect, _) = ui.allocate_exact_size(egui::vec2(ui.available_width(), 40.0), egui::Sense::hover());
        let painter = ui.painter_at(rect);
        let w = rect.width() / HISTORY as f32;
        for i in 0..HISTORY {
            let level = status.history[(pos + i) % HISTORY].load(Ordering::Relaxed);
            let h = ((db(level) + 60.0) / 60.0).clamp(0.0, 1.0) * rect.height();
            let x = rect.left() + i as f32 * w;
            painter.rect_filled(
                egui::Rect::from_min_max(egui::pos2(x, rect.bottom() - h), egui::pos2(x + w, rect.bottom())),
                0.0,
                egui::Color32::from_rgb(90, 160, 220),
            );
        }
    }
}

fn toggle(
    ui: &mut egui::Ui,
    setter: &nice_plug::prelude::ParamSetter,
    param: &nice_plug::prelude::FloatParam,
    text: &str,
) {
    let on = is_on(param);
    if ui.selectable_label(on, text).clicked() {
        setter.begin_set_parameter(param);
        setter.set_parameter(param, if on { 0.0 } else { 1.0 });
        setter.end_set_parameter(param);
    }
}
