//! Stemflow: source-only music source separation with one Glow prior per instrument.
//!
//! [`engine`] holds everything that separates audio and knows nothing of plugins or command lines;
//! [`cli`] is the command line's thin shell over it; [`plugin`] is the CLAP/VST3 plugin.

pub mod cli;
pub mod engine;
pub mod plugin;

nice_plug::nice_export_clap!(plugin::Stemflow);
nice_plug::nice_export_vst3!(plugin::Stemflow);
