//! The separation engine: audio in → frames → spectrograms → priors + search → masks → stems out.
//!
//! Nothing in here knows about plugins or command lines. The folders depend on each other in one
//! direction only: [`signal`] and [`priors`] need nothing but the leaf modules below (bounds,
//! constants, hex_digest, limits, metrics, spread, stem_name);
//! [`search`] uses both; [`files`] drives a whole file through [`search`].

pub mod bounds;
pub mod constants;
pub mod fault;
pub mod files;
pub mod hex_digest;
pub mod limits;
pub mod metrics;
pub mod priors;
pub mod search;
pub mod signal;
pub mod spread;
pub mod stem_name;
