//! The one search of folders for audio files, shared by `separate` (the mixes of a run) and
//! `train-prior` (the recordings it checks before the trainer starts): linked folders are
//! followed, each real folder and each real file is taken once (so a link cycle or two links to
//! one folder list nothing twice), and folders the caller names are left out.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Every file of `roots` whose extension is one of `extensions` (lower case; any case matches):
/// a root that is not a folder is kept as given, even if it does not exist, so the caller
/// reports it; a folder gives the files under it, depth first with each folder's entries sorted
/// by name (the order of the paths themselves), folders for which `skip` holds left out (a root
/// included). A file reached twice (given twice, or through a link) is kept at its first path.
/// Unreadable folders contribute nothing and are logged.
pub fn find_files(roots: &[PathBuf], extensions: &[&str], skip: &dyn Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut walk = Walk {
        extensions,
        skip,
        seen_dirs: HashSet::new(),
        seen_files: HashSet::new(),
        found: Vec::new(),
    };
    for root in roots {
        if root.is_dir() {
            walk.dir(root);
        } else {
            walk.file(root);
        }
    }
    walk.found
}

/// Whether `path` has one of `extensions` (lower case) as its extension, in any case.
pub fn has_extension(path: &Path, extensions: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| extensions.iter().any(|known| known.eq_ignore_ascii_case(e)))
}

/// The state of one search.
struct Walk<'a> {
    /// Extensions taken.
    extensions: &'a [&'a str],
    /// Folders left out.
    skip: &'a dyn Fn(&Path) -> bool,
    /// Real paths of the folders entered, so a cycle of links ends.
    seen_dirs: HashSet<PathBuf>,
    /// Real paths of the files taken, so none is taken twice.
    seen_files: HashSet<PathBuf>,
    /// The files, in order.
    found: Vec<PathBuf>,
}

impl Walk<'_> {
    /// Takes `path` unless the same file was taken already (a missing file is always taken).
    fn file(&mut self, path: &Path) {
        let new = path
            .canonicalize()
            .map_or(true, |real| self.seen_files.insert(real));
        if new {
            self.found.push(path.to_path_buf());
        }
    }

    /// The files under `dir`, once per real folder.
    fn dir(&mut self, dir: &Path) {
        let Ok(real) = dir.canonicalize() else {
            log::warn!("{}: left out: its real path could not be resolved", dir.display());
            return;
        };
        if !self.seen_dirs.insert(real) || (self.skip)(dir) {
            return;
        }
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => {
                log::warn!("{}: left out: {e}", dir.display());
                return;
            }
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            if path.is_dir() {
                self.dir(&path);
            } else if path.is_file() && has_extension(&path, self.extensions) {
                self.file(&path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const WAV: &[&str] = &["wav"];

    #[cfg(unix)]
    #[test]
    fn a_cycle_of_links_and_two_links_to_one_folder_list_each_file_once() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::write(root.join("a/b/x.wav"), b"").unwrap();
        fs::write(root.join("a/y.wav"), b"").unwrap();
        std::os::unix::fs::symlink(root.join("a"), root.join("a/b/up")).unwrap();
        std::os::unix::fs::symlink(root.join("a/b"), root.join("a/c")).unwrap();
        std::os::unix::fs::symlink(root.join("a/y.wav"), root.join("a/z.wav")).unwrap();
        let found = find_files(&[root.join("a"), root.join("a/y.wav")], WAV, &|_| false);
        assert_eq!(found, vec![root.join("a/b/x.wav"), root.join("a/y.wav")]);
    }

    #[test]
    fn skipped_folders_and_other_extensions_are_left_out_and_missing_roots_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs::create_dir_all(root.join("keep")).unwrap();
        fs::create_dir_all(root.join("out/song")).unwrap();
        for name in ["keep/a.WAV", "keep/b.txt", "out/song/bass.wav"] {
            fs::write(root.join(name), b"").unwrap();
        }
        let missing = root.join("missing.wav");
        let skip = |dir: &Path| dir.ends_with("out");
        let found = find_files(&[root.to_path_buf(), missing.clone()], WAV, &skip);
        assert_eq!(found, vec![root.join("keep/a.WAV"), missing]);
    }
}
