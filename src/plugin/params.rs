//! The plugin's parameters: a strip per output slot (gain, mute, solo) and the separation
//! settings (quality, objective, output mode, device), plus state migration.

use super::slots::{SLOT_COUNT, SLOT_NAMES};
use crate::engine::runtime::Device;
use crate::engine::settings::{Objective, OutputMode, SeparationSettings};
use nice_plug::plugin::ParamValue;
use nice_plug::prelude::*;
use std::sync::Arc;

/// Highest and lowest gain of a stem strip, in dB.
const GAIN_MAX_DB: f32 = 12.0;
const GAIN_MIN_DB: f32 = -60.0;

/// One output slot's mixer strip.
#[derive(Params)]
pub struct StripParams {
    /// Gain of this stem in the main output mix (dB, smoothed).
    #[id = "gain"]
    pub gain: FloatParam,
    /// Takes this stem out of the main output mix (its own output keeps playing).
    #[id = "mute"]
    pub mute: BoolParam,
    /// When any stem is soloed, the main output mixes only the soloed stems.
    #[id = "solo"]
    pub solo: BoolParam,
}

impl StripParams {
    fn new(slot: usize) -> Self {
        let name = SLOT_NAMES[slot];
        StripParams {
            gain: FloatParam::new(
                format!("{name} Gain"),
                0.0,
                FloatRange::Linear {
                    min: GAIN_MIN_DB,
                    max: GAIN_MAX_DB,
                },
            )
            .with_smoother(SmoothingStyle::Linear(20.0))
            .with_step_size(0.1)
            .with_unit(" dB"),
            mute: BoolParam::new(format!("{name} Mute"), false),
            solo: BoolParam::new(format!("{name} Solo"), false),
        }
    }

    /// The strip's linear gain now (the smoother's target), mute excluded.
    pub fn target_gain(&self) -> f32 {
        util::db_to_gain(self.gain.value())
    }
}

/// Separation objective as a parameter.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectiveChoice {
    /// Data term only (γ = 0).
    #[id = "mle"]
    #[name = "MLE"]
    Mle,
    /// Data term minus γ·log-prior.
    #[id = "map"]
    #[name = "MAP"]
    Map,
}

/// Output mode as a parameter.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeChoice {
    /// Soft masks: the stems sum to the input.
    #[id = "consistent"]
    #[name = "Consistent"]
    Consistent,
    /// Decoded magnitudes with the mixture phase (the paper's output).
    #[id = "mixture-phase"]
    #[name = "Mixture phase"]
    MixturePhase,
}

/// Compute device as a parameter.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    /// ONNX Runtime's CPU provider.
    #[id = "cpu"]
    #[name = "CPU"]
    Cpu,
    /// CUDA (falls back to the CPU when unavailable).
    #[id = "cuda"]
    #[name = "CUDA"]
    Cuda,
    /// DirectML (falls back to the CPU when unavailable).
    #[id = "directml"]
    #[name = "DirectML"]
    DirectMl,
}

impl DeviceChoice {
    /// The engine's device.
    pub fn device(self) -> Device {
        match self {
            DeviceChoice::Cpu => Device::Cpu,
            DeviceChoice::Cuda => Device::Cuda,
            DeviceChoice::DirectMl => Device::DirectMl,
        }
    }
}

/// Every parameter of the plugin.
#[derive(Params)]
pub struct StemflowParams {
    /// One strip per output slot, ids `gain_1` … `solo_8`.
    #[nested(array, group = "Stem")]
    pub strips: [StripParams; SLOT_COUNT],
    /// Adam iterations per 5-s frame.
    #[id = "iterations"]
    pub iterations: IntParam,
    /// MLE or MAP.
    #[id = "objective"]
    pub objective: EnumParam<ObjectiveChoice>,
    /// Weight of the prior term under MAP.
    #[id = "gamma"]
    pub gamma: FloatParam,
    /// Consistent or mixture-phase output.
    #[id = "mode"]
    pub mode: EnumParam<ModeChoice>,
    /// Where ONNX Runtime runs the priors.
    #[id = "device"]
    pub device: EnumParam<DeviceChoice>,
}

impl Default for StemflowParams {
    fn default() -> Self {
        StemflowParams {
            strips: std::array::from_fn(StripParams::new),
            iterations: IntParam::new("Quality (iterations)", 150, IntRange::Linear { min: 1, max: 500 }),
            objective: EnumParam::new("Objective", ObjectiveChoice::Mle),
            gamma: FloatParam::new("MAP gamma", 1.0, FloatRange::Linear { min: 0.01, max: 1.0 })
                .with_step_size(0.01),
            mode: EnumParam::new("Output mode", ModeChoice::Consistent),
            device: EnumParam::new("Device", DeviceChoice::Cpu),
        }
    }
}

impl StemflowParams {
    /// The separation settings these parameters ask for (the CLI's default preset otherwise).
    pub fn settings(&self) -> SeparationSettings {
        let mut settings = SeparationSettings::default_preset();
        settings.iterations = self.iterations.value().max(1) as usize;
        settings.objective = match self.objective.value() {
            ObjectiveChoice::Mle => Objective::Mle,
            ObjectiveChoice::Map => Objective::Map {
                gamma: self.gamma.value().clamp(0.01, 1.0),
            },
        };
        settings.mode = match self.mode.value() {
            ModeChoice::Consistent => OutputMode::Consistent,
            ModeChoice::MixturePhase => OutputMode::MixturePhase,
        };
        settings
    }
}

/// The state format this build writes; states of another major.minor load as defaults.
pub fn state_is_compatible(version: &str) -> bool {
    let ours: Vec<&str> = env!("CARGO_PKG_VERSION").split('.').take(2).collect();
    let theirs: Vec<&str> = version.split('.').take(2).collect();
    ours == theirs
}

/// Makes a loaded state safe: an incompatible (older or newer) state, or any value of the wrong
/// type or not finite, is replaced by the parameter's default, with a log line.
pub fn filter_state(state: &mut PluginState) {
    let defaults = StemflowParams::default();
    let map = defaults.param_map();
    let default_of = |ptr: &ParamPtr| -> ParamValue {
        // SAFETY: the pointers come from `defaults`, alive for this whole function.
        unsafe {
            match ptr {
                ParamPtr::FloatParam(p) => ParamValue::F32((**p).default_plain_value()),
                ParamPtr::IntParam(p) => ParamValue::I32((**p).default_plain_value()),
                ParamPtr::BoolParam(p) => ParamValue::Bool((**p).default_plain_value()),
                ParamPtr::EnumParam(p) => ParamValue::I32((**p).default_plain_value()),
            }
        }
    };
    if !state_is_compatible(&state.version) {
        log::warn!(
            "Stemflow: state from version `{}` is not compatible with {}; loading defaults",
            state.version,
            env!("CARGO_PKG_VERSION")
        );
        state.params = map
            .iter()
            .map(|(id, ptr, _)| (id.clone(), default_of(ptr)))
            .collect();
        state.fields.clear();
        return;
    }
    for (id, ptr, _) in &map {
        let valid = match (ptr, state.params.get(id)) {
            (ParamPtr::FloatParam(_), Some(ParamValue::F32(v))) => v.is_finite(),
            (ParamPtr::IntParam(_), Some(ParamValue::I32(_))) => true,
            (ParamPtr::BoolParam(_), Some(ParamValue::Bool(_))) => true,
            (ParamPtr::EnumParam(_), Some(ParamValue::I32(_) | ParamValue::String(_))) => true,
            (_, None) => false,
            _ => false,
        };
        if !valid {
            if state.params.contains_key(id) {
                log::warn!("Stemflow: invalid saved value for `{id}`; using its default");
            }
            state.params.insert(id.clone(), default_of(ptr));
        }
    }
}

/// A shared handle, as the plugin and its worker hold it.
pub type SharedParams = Arc<StemflowParams>;
