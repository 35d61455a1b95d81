//! The plugin's parameters: a strip per output slot (gain, mute, solo) and the separation
//! settings (offline and realtime quality, objective, output mode, device), plus state
//! migration.

use super::slots::{SLOT_COUNT, SLOT_NAMES};
use crate::engine::priors::runtime::Device;
use crate::engine::search::chain_settings::AnnealedSettings;
use crate::engine::search::chain_settings::LangevinSettings;
use crate::engine::search::settings::{
    Objective, OutputMode, SearchKind, SeparationSettings, GAMMA, ITERATIONS, NMF_WEIGHT,
};
use crate::engine::search::stream_framing::{DEFAULT_PROCESSING_ALLOWANCE_SECONDS, PROCESSING_ALLOWANCE};
use nice_plug::plugin::ParamValue;
use nice_plug::prelude::*;
use std::sync::Arc;

/// The most iterations the quality knob offers (the engine's range, [`ITERATIONS`], goes
/// further than a realtime worker can use).
const ITERATIONS_KNOB_MAX: i32 = 500;
/// The smallest γ the MAP knob offers: the engine's range, [`GAMMA`], is open at 0, which a
/// linear knob cannot reach.
const GAMMA_KNOB_MIN: f32 = 0.01;

/// Highest and lowest gain of a stem strip, in dB.
const GAIN_MAX_DB: f32 = 12.0;
const GAIN_MIN_DB: f32 = -60.0;

/// An on/off switch stored as a continuous parameter in [0, 1] (on at ≥ 0.5). Hosts that set a
/// normalized value and read it back (pluginval's state restoration test, for one) see exactly
/// what they set: a stepped parameter would snap it up to 0.5 away. See `Switch::on`.
fn switch(name: String, default: bool) -> FloatParam {
    FloatParam::new(
        name,
        if default { 1.0 } else { 0.0 },
        FloatRange::Linear { min: 0.0, max: 1.0 },
    )
    .with_value_to_string(Arc::new(|v| if v >= 0.5 { "On".into() } else { "Off".into() }))
    .with_string_to_value(Arc::new(|s| match s.trim().to_ascii_lowercase().as_str() {
        "on" | "1" | "true" | "yes" => Some(1.0),
        "off" | "0" | "false" | "no" => Some(0.0),
        _ => None,
    }))
}

/// A choice among `names`, stored as a continuous parameter over [0, n − 1] and read rounded (for
/// the same reason as [`switch`]).
fn choice(name: &str, names: &'static [&'static str], default: usize) -> FloatParam {
    let max = (names.len() - 1) as f32;
    FloatParam::new(name, default as f32, FloatRange::Linear { min: 0.0, max })
        .with_value_to_string(Arc::new(move |v| {
            names[(v.round().max(0.0) as usize).min(names.len() - 1)].to_string()
        }))
        .with_string_to_value(Arc::new(move |s| {
            let s = s.trim();
            names
                .iter()
                .position(|n| n.eq_ignore_ascii_case(s))
                .map(|i| i as f32)
        }))
}

/// A knob for the NMF expert's weight over the engine's range, [`NMF_WEIGHT`].
fn nmf_weight_knob(name: &str, default: f32) -> FloatParam {
    FloatParam::new(
        name,
        default,
        FloatRange::Linear {
            min: NMF_WEIGHT.min as f32,
            max: NMF_WEIGHT.max as f32,
        },
    )
    .with_step_size(0.05)
}

/// A parameter's value, or its default when the value is not finite (a host can send NaN):
/// settings built from it then always equal themselves, so the worker does not rebuild its
/// separator on every turn.
fn finite_or_default(param: &FloatParam) -> f32 {
    let value = param.value();
    if value.is_finite() {
        value
    } else {
        param.default_plain_value()
    }
}

/// Whether a [`switch`] is on.
pub fn is_on(param: &FloatParam) -> bool {
    param.value() >= 0.5
}

/// The index a [`choice`] stands at.
pub fn chosen(param: &FloatParam) -> usize {
    param.value().round().max(0.0) as usize
}

/// One output slot's mixer strip.
#[derive(Params)]
pub struct StripParams {
    /// Gain of this stem in the main output mix (dB, smoothed).
    #[id = "gain"]
    pub gain: FloatParam,
    /// Takes this stem out of the main output mix (its own output keeps playing). A [`switch`].
    #[id = "mute"]
    pub mute: FloatParam,
    /// When any stem is soloed, the main output mixes only the soloed stems. A [`switch`].
    #[id = "solo"]
    pub solo: FloatParam,
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
            mute: switch(format!("{name} Mute"), false),
            solo: switch(format!("{name} Solo"), false),
        }
    }
}

/// Names of the objective choices, in index order.
pub const OBJECTIVES: &[&str] = &["MLE", "MAP"];
/// Names of the output modes, in index order.
pub const MODES: &[&str] = &["Consistent", "Mixture phase"];
/// Names of the separators, in index order: Adam over the latents, Langevin chains, or Langevin
/// chains annealed down the priors' noise ladder.
pub const SEPARATORS: &[&str] = &["Adam", "Langevin", "Annealed"];
/// What the plugin does when the host renders faster than real time while saying it plays in
/// real time, in index order: wait for every segment (a render), or play late segments dry.
pub const FAST_RENDERS: &[&str] = &["Wait for separation", "Play dry"];
/// Names of the devices, in index order.
pub const DEVICES: &[&str] = &["CPU", "CUDA", "DirectML"];

/// Every parameter of the plugin.
#[derive(Params)]
pub struct StemflowParams {
    /// One strip per output slot, ids `gain_1` … `solo_8`.
    #[nested(array, group = "Stem")]
    pub strips: [StripParams; SLOT_COUNT],
    /// Adam iterations per frame of an offline render (the default preset's search).
    #[id = "iterations"]
    pub iterations: IntParam,
    /// Adam iterations per frame while the host plays in real time (the realtime preset's
    /// search: fewer, larger steps, so the worker keeps up with playback).
    #[id = "realtime_iterations"]
    pub realtime_iterations: IntParam,
    /// How frames are separated ([`SEPARATORS`]): the Adam search, Langevin chains under the
    /// priors' scores (steps per frame from the quality knobs, the rest the engine's defaults),
    /// or annealed Langevin chains (the quality knobs' steps at each noise level).
    #[id = "separator"]
    pub separator: FloatParam,
    /// MLE or MAP ([`OBJECTIVES`]).
    #[id = "objective"]
    pub objective: FloatParam,
    /// Weight of the prior term under MAP.
    #[id = "gamma"]
    pub gamma: FloatParam,
    /// Consistent or mixture-phase output ([`MODES`]).
    #[id = "mode"]
    pub mode: FloatParam,
    /// Weight of the NMF expert in the masks of an offline render (0 = the flows alone, 1 = the
    /// NMF alone; the default preset's); used when every loaded prior has an NMF dictionary.
    #[id = "nmf_weight"]
    pub nmf_weight: FloatParam,
    /// The same while the host plays in real time (the realtime preset's).
    #[id = "realtime_nmf_weight"]
    pub realtime_nmf_weight: FloatParam,
    /// Where ONNX Runtime runs the priors ([`DEVICES`]).
    #[id = "device"]
    pub device: FloatParam,
    /// Seconds the worker has to separate a frame in real time; the latency is the frame plus
    /// this. Read when the host activates the plugin (hosts handle a latency that changes
    /// while they play badly), so a change applies from the next activation.
    #[id = "processing_allowance"]
    pub processing_allowance: FloatParam,
    /// A transport that plays several times faster than real time while the host says it
    /// processes in real time is a render: wait for separation ([`FAST_RENDERS`]; see
    /// `host_clock.rs`), or play late segments dry as in playback. Not automatable.
    #[id = "fast_render"]
    pub fast_render: FloatParam,
}

impl Default for StemflowParams {
    fn default() -> Self {
        StemflowParams {
            strips: std::array::from_fn(StripParams::new),
            iterations: IntParam::new(
                "Quality (iterations)",
                SeparationSettings::default_preset().iterations as i32,
                IntRange::Linear {
                    min: ITERATIONS.min as i32,
                    max: ITERATIONS_KNOB_MAX,
                },
            ),
            realtime_iterations: IntParam::new(
                "Realtime quality (iterations)",
                SeparationSettings::realtime_preset().iterations as i32,
                IntRange::Linear {
                    min: ITERATIONS.min as i32,
                    max: ITERATIONS_KNOB_MAX,
                },
            ),
            separator: choice("Separator", SEPARATORS, 0),
            objective: choice("Objective", OBJECTIVES, 0),
            gamma: FloatParam::new(
                "MAP gamma",
                GAMMA.max as f32,
                FloatRange::Linear {
                    min: GAMMA_KNOB_MIN,
                    max: GAMMA.max as f32,
                },
            )
            .with_step_size(0.01),
            mode: choice("Output mode", MODES, 0),
            nmf_weight: nmf_weight_knob("NMF weight", SeparationSettings::default_preset().nmf_weight),
            realtime_nmf_weight: nmf_weight_knob(
                "Realtime NMF weight",
                SeparationSettings::realtime_preset().nmf_weight,
            ),
            device: choice("Device", DEVICES, 0),
            processing_allowance: FloatParam::new(
                "Processing allowance",
                DEFAULT_PROCESSING_ALLOWANCE_SECONDS as f32,
                FloatRange::Linear {
                    min: PROCESSING_ALLOWANCE.min as f32,
                    max: PROCESSING_ALLOWANCE.max as f32,
                },
            )
            .with_step_size(0.1)
            .with_unit(" s")
            .non_automatable(),
            fast_render: choice("Faster-than-realtime render", FAST_RENDERS, 0).non_automatable(),
        }
    }
}

impl StemflowParams {
    /// Whether a render faster than real time that the host does not announce waits for
    /// separation.
    pub fn waits_for_fast_renders(&self) -> bool {
        chosen(&self.fast_render) == 0
    }

    /// The device the parameters ask for.
    pub fn device(&self) -> Device {
        match chosen(&self.device) {
            0 => Device::Cpu,
            1 => Device::Cuda,
            _ => Device::DirectMl,
        }
    }

    /// The separation settings these parameters ask for: the CLI's default preset for an
    /// `offline` render, its realtime preset while the host plays, each with its own iteration
    /// count; both on the live stream's frames (the realtime preset's length and overlap: the
    /// latency is fixed when the host activates the plugin), so a bounce equals `stemflow
    /// separate --preset realtime`. The engine validates them when it builds the separator.
    pub fn settings(&self, offline: bool) -> SeparationSettings {
        let (mut settings, iterations, nmf_weight) = if offline {
            (
                SeparationSettings::default_preset(),
                &self.iterations,
                &self.nmf_weight,
            )
        } else {
            (
                SeparationSettings::realtime_preset(),
                &self.realtime_iterations,
                &self.realtime_nmf_weight,
            )
        };
        let live = SeparationSettings::realtime_preset();
        settings.frame_seconds = live.frame_seconds;
        settings.overlap_seconds = live.overlap_seconds;
        settings.iterations = iterations.value().max(0) as usize;
        settings.nmf_weight = finite_or_default(nmf_weight);
        settings.search = match chosen(&self.separator) {
            0 => SearchKind::Adam,
            1 => SearchKind::Langevin(LangevinSettings {
                steps: settings.iterations,
                ..LangevinSettings::DEFAULT
            }),
            _ => SearchKind::Annealed(AnnealedSettings {
                steps_per_level: settings.iterations,
                ..AnnealedSettings::DEFAULT
            }),
        };
        settings.objective = match chosen(&self.objective) {
            0 => Objective::Mle,
            _ => Objective::Map {
                gamma: finite_or_default(&self.gamma),
            },
        };
        settings.mode = match chosen(&self.mode) {
            0 => OutputMode::Consistent,
            _ => OutputMode::MixturePhase,
        };
        settings
    }
}

/// Makes a loaded state safe, whichever version saved it: a value of the wrong type or not
/// finite is replaced by the parameter's default, a value outside its range is clamped, values
/// of parameters this build does not have are dropped, each with a log line.
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
    if state.version != env!("CARGO_PKG_VERSION") {
        // Parameter ids are stable: each value is kept if it still fits its parameter.
        nice_log!(
            "Stemflow: loading a state saved by version `{}` into {}",
            state.version,
            env!("CARGO_PKG_VERSION")
        );
    }
    state
        .params
        .retain(|id, _| map.iter().any(|(known, _, _)| known == id));
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
                nice_warn!("Stemflow: invalid saved value for `{id}`; using its default");
            }
            state.params.insert(id.clone(), default_of(ptr));
            continue;
        }
        if let Some(value) = state.params.get_mut(id) {
            clamp_to_range(id, ptr, value);
        }
    }
}

/// Puts a restored plain value inside its parameter's range (hosts hand back whatever was
/// saved, and the wrapper does not clamp plain values), with a log line when it moves.
fn clamp_to_range(id: &str, ptr: &ParamPtr, value: &mut ParamValue) {
    // SAFETY: the pointers come from the caller's `defaults`, alive while it runs.
    let moved = unsafe {
        match (ptr, &mut *value) {
            (ParamPtr::FloatParam(p), ParamValue::F32(v)) => {
                let (lo, hi) = ((**p).preview_plain(0.0), (**p).preview_plain(1.0));
                let clamped = v.clamp(lo.min(hi), lo.max(hi));
                std::mem::replace(v, clamped) != clamped
            }
            (ParamPtr::IntParam(p), ParamValue::I32(v)) => {
                let (lo, hi) = ((**p).preview_plain(0.0), (**p).preview_plain(1.0));
                let clamped = (*v).clamp(lo.min(hi), lo.max(hi));
                std::mem::replace(v, clamped) != clamped
            }
            // An enum saved as its index: an index past the variants would name none.
            (ParamPtr::EnumParam(p), ParamValue::I32(v)) => {
                let (lo, hi) = ((**p).preview_plain(0.0), (**p).preview_plain(1.0));
                let clamped = (*v).clamp(lo.min(hi), lo.max(hi));
                std::mem::replace(v, clamped) != clamped
            }
            _ => false,
        }
    };
    if moved {
        nice_warn!("Stemflow: saved value for `{id}` was outside its range; clamped");
    }
}

/// A shared handle, as the plugin and its worker hold it.
pub type SharedParams = Arc<StemflowParams>;

#[cfg(test)]
mod tests {
    use super::*;

    /// The separator choice picks the search: Adam by default, Langevin chains with the quality
    /// knob's count as steps and the engine's other defaults, annealed chains with it as the steps
    /// at each noise level.
    #[test]
    fn the_separator_choice_picks_the_search() {
        let params = StemflowParams::default();
        assert_eq!(params.settings(true).search, SearchKind::Adam);
        // SAFETY: the parameter is not shared with an audio thread in this test.
        unsafe { params.separator.as_ptr()._internal_set_normalized_value(0.5) };
        let settings = params.settings(true);
        assert_eq!(
            settings.search,
            SearchKind::Langevin(LangevinSettings {
                steps: settings.iterations,
                ..LangevinSettings::DEFAULT
            })
        );
        assert_eq!(settings.validate(), Ok(()));
        // SAFETY: as above.
        unsafe { params.separator.as_ptr()._internal_set_normalized_value(1.0) };
        let settings = params.settings(true);
        assert_eq!(
            settings.search,
            SearchKind::Annealed(AnnealedSettings {
                steps_per_level: settings.iterations,
                ..AnnealedSettings::DEFAULT
            })
        );
        assert_eq!(settings.validate(), Ok(()));
    }

    /// A state holding every parameter at its default, as this build saves it.
    fn saved_state() -> PluginState {
        let defaults = StemflowParams::default();
        let params = defaults
            .param_map()
            .iter()
            .map(|(id, ptr, _)| {
                // SAFETY: `defaults` outlives the map.
                let value = unsafe {
                    match ptr {
                        ParamPtr::FloatParam(p) => ParamValue::F32((**p).default_plain_value()),
                        ParamPtr::IntParam(p) => ParamValue::I32((**p).default_plain_value()),
                        ParamPtr::BoolParam(p) => ParamValue::Bool((**p).default_plain_value()),
                        ParamPtr::EnumParam(p) => ParamValue::I32((**p).default_plain_value()),
                    }
                };
                (id.clone(), value)
            })
            .collect();
        PluginState {
            version: env!("CARGO_PKG_VERSION").to_string(),
            params,
            fields: Default::default(),
        }
    }

    #[test]
    fn restored_values_outside_their_range_are_clamped() {
        let mut state = saved_state();
        state
            .params
            .insert("iterations".into(), ParamValue::I32(i32::MAX));
        state.params.insert("gain_1".into(), ParamValue::F32(1e30));
        state.params.insert("gain_2".into(), ParamValue::F32(-1e30));
        state.params.insert("gamma".into(), ParamValue::F32(0.0));
        state.params.insert("objective".into(), ParamValue::F32(7.0));
        filter_state(&mut state);
        let get = |id: &str| state.params.get(id).cloned();
        assert!(matches!(
            get("iterations"),
            Some(ParamValue::I32(ITERATIONS_KNOB_MAX))
        ));
        assert!(matches!(get("gain_1"), Some(ParamValue::F32(v)) if v == GAIN_MAX_DB));
        assert!(matches!(get("gain_2"), Some(ParamValue::F32(v)) if v == GAIN_MIN_DB));
        assert!(matches!(get("gamma"), Some(ParamValue::F32(v)) if v == GAMMA_KNOB_MIN));
        assert!(matches!(get("objective"), Some(ParamValue::F32(v)) if v == (OBJECTIVES.len() - 1) as f32));
        let mut negative = saved_state();
        negative
            .params
            .insert("iterations".into(), ParamValue::I32(i32::MIN));
        filter_state(&mut negative);
        assert!(matches!(
            negative.params.get("iterations"),
            Some(ParamValue::I32(1))
        ));
    }

    #[test]
    fn values_inside_their_range_are_kept() {
        let mut state = saved_state();
        state.params.insert("iterations".into(), ParamValue::I32(42));
        state.params.insert("gain_3".into(), ParamValue::F32(-6.5));
        filter_state(&mut state);
        assert!(matches!(
            state.params.get("iterations"),
            Some(ParamValue::I32(42))
        ));
        assert!(matches!(state.params.get("gain_3"), Some(ParamValue::F32(v)) if *v == -6.5));
    }

    /// An offline render separates with the default preset and the quality knob, so a bounce
    /// equals `stemflow separate`; realtime playback with the realtime preset and its own knob.
    /// Any saved value, of any type, for known and unknown ids.
    fn any_value() -> impl proptest::strategy::Strategy<Value = ParamValue> {
        use proptest::prelude::*;
        prop_oneof![
            any::<f32>().prop_map(ParamValue::F32),
            prop_oneof![Just(f32::NAN), Just(f32::INFINITY), Just(-1e30f32)].prop_map(ParamValue::F32),
            any::<i32>().prop_map(ParamValue::I32),
            any::<bool>().prop_map(ParamValue::Bool),
            "[a-z_]{0,12}".prop_map(ParamValue::String),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(400))]

        /// Whatever a state holds, after filtering every parameter of this build has a value of
        /// its type inside its range, and nothing else is left.
        #[test]
        fn any_restored_state_is_made_safe(
            values in proptest::collection::vec((0usize..64, any_value()), 0..40),
            stray in proptest::collection::vec(("[a-z]{1,8}", any_value()), 0..4),
        ) {
            let defaults = StemflowParams::default();
            let map = defaults.param_map();
            let mut state = saved_state();
            for (i, value) in values {
                let (id, _, _) = &map[i % map.len()];
                state.params.insert(id.clone(), value);
            }
            for (id, value) in stray {
                state.params.insert(format!("x_{id}"), value);
            }
            filter_state(&mut state);
            proptest::prop_assert_eq!(state.params.len(), map.len());
            for (id, ptr, _) in &map {
                let value = state.params.get(id).expect("every parameter has a value");
                // SAFETY: `defaults` outlives the map.
                let ok = unsafe {
                    match (ptr, value) {
                        (ParamPtr::FloatParam(p), ParamValue::F32(v)) => {
                            let (lo, hi) = ((**p).preview_plain(0.0), (**p).preview_plain(1.0));
                            v.is_finite() && *v >= lo.min(hi) && *v <= lo.max(hi)
                        }
                        (ParamPtr::IntParam(p), ParamValue::I32(v)) => {
                            (**p).preview_plain(0.0) <= *v && *v <= (**p).preview_plain(1.0)
                        }
                        (ParamPtr::EnumParam(p), ParamValue::I32(v)) => {
                            (**p).preview_plain(0.0) <= *v && *v <= (**p).preview_plain(1.0)
                        }
                        (ParamPtr::EnumParam(_), ParamValue::String(_)) => true,
                        (ParamPtr::BoolParam(_), ParamValue::Bool(_)) => true,
                        _ => false,
                    }
                };
                proptest::prop_assert!(ok, "{id}: {value:?}");
            }
        }
    }

    /// Both modes separate the live stream's frames (the latency is fixed), with the default's
    /// search: an offline render is `--preset realtime`, and so is playback.
    #[test]
    fn the_render_mode_picks_the_preset_on_the_live_frames() {
        let params = StemflowParams::default();
        let realtime = SeparationSettings::realtime_preset();
        assert_eq!(params.settings(false), realtime);
        assert_eq!(
            params.settings(true),
            SeparationSettings {
                frame_seconds: realtime.frame_seconds,
                overlap_seconds: realtime.overlap_seconds,
                ..SeparationSettings::default_preset()
            }
        );
    }
}
