//! The command line: a thin shell over [`crate::engine`] (being written).
