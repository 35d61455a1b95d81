//! One file a manifest lists, by name and content hash.

use serde::{Deserialize, Serialize};

/// One graph file and its expected content hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphFile {
    /// File name inside the prior folder.
    pub file: String,
    /// Lower-case hex sha256 of the file, so a truncated download or edited graph is refused.
    pub sha256: String,
}
