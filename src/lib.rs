//! Stemflow: source-only music source separation with one Glow prior per instrument.
//!
//! [`engine`] holds everything that separates audio and knows nothing of plugins or command lines;
//! [`cli`] is the command line's thin shell over it.

pub mod cli;
pub mod engine;
