//! A JSON file the user keeps (a track's record, a run's report), written atomically: a hidden
//! temporary file in the same folder, flushed to disk, then renamed over the old one.

use crate::engine::files::stem_writers::user_file_builder;
use serde::Serialize;
use std::io::Write;
use std::path::Path;

/// Writes `value` as pretty JSON to `path`, creating its folder if missing.
pub fn write_json_atomically(path: &Path, value: &impl Serialize) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let mut temp = user_file_builder(&format!(".{name}.partial-")).tempfile_in(dir)?;
    let text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
    temp.write_all(text.as_bytes())?;
    temp.write_all(b"\n")?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
