//! The priors: finding and loading ONNX Runtime (its GPU build in `gpu_runtime`), reading and verifying a prior's manifest and
//! graphs, running its decode and gradient graphs, the catalogue of prior folders, and the level
//! calibration drawn from a prior's own samples. Imports only the engine's leaf modules
//! (`constants`, `hex_digest`, `limits`, `spread`), never signal, search or files. The manifest is
//! parsed in `manifest`, its files read and hashed in `verified_files`, and sessions made from
//! those bytes in `prior` (with `session_io` and `split_gradient`).

pub mod annealing;
pub mod calibration;
pub mod catalog;
pub mod data_dir;
pub mod domain;
pub mod gpu_runtime;
pub mod graph_file;
pub(crate) mod graph_interface;
pub(crate) mod lazy_session;
pub mod level_gains_section;
pub mod manifest;
pub mod manifest_error;
pub mod nmf_dictionary;
pub mod onnx_checks;
pub mod onnx_wire;
pub mod prior;
pub mod prior_error;
pub mod runtime;
pub mod session_io;
pub mod split_gradient;
pub mod verified_files;
