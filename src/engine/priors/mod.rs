//! The priors: finding and loading ONNX Runtime, reading and verifying a prior's manifest and
//! graphs, running its decode and gradient graphs, the catalogue of prior folders, and the level
//! calibration drawn from a prior's own samples. Imports only the engine's leaf modules
//! (`constants`, `limits`), never signal, search or files.

pub mod annealing;
pub mod calibration;
pub mod catalog;
pub mod data_dir;
pub mod manifest;
pub mod nmf_dictionary;
pub mod onnx_checks;
pub mod prior;
pub mod runtime;
pub mod split_gradient;
