//! Which files a `separate` run takes and where each one's stems go: inputs are files and
//! folders (searched recursively for audio), and every track gets its own output folder, named
//! after the file, never shared with another track.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// File extensions (lower case) a folder search takes as audio.
pub const AUDIO_EXTENSIONS: [&str; 7] = ["wav", "flac", "ogg", "mp3", "aiff", "aif", "wave"];

/// The folder stems go to when there are several tracks and no `-o`.
pub const DEFAULT_OUTPUT: &str = "stems";

/// One track of a run: the file and the folder its stems are written to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    /// The mix to separate.
    pub input: PathBuf,
    /// Where its `<stem>.wav` files go.
    pub output: PathBuf,
}

/// Every input file: a file as given, a folder as the audio files under it (recursively, sorted
/// by path). A folder with unreadable parts contributes what can be read; a path that does not
/// exist is kept, so separating it reports the error for that track.
pub fn expand_inputs(inputs: &[PathBuf]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut found = Vec::new();
            collect_audio(input, &mut found);
            found.sort();
            files.extend(found);
        } else {
            files.push(input.clone());
        }
    }
    files
}

/// Audio files under `dir`, depth first.
fn collect_audio(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_audio(&path, found);
        } else if is_audio(&path) {
            found.push(path);
        }
    }
}

/// Whether `path` has one of [`AUDIO_EXTENSIONS`] (any case).
fn is_audio(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| AUDIO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Output folders for `files`. One file with `-o DIR`: `DIR` itself, as `separate` always did.
/// Otherwise `<DIR or stems>/<track>`, the track named by the file's stem (`song.flac` → `song`);
/// a name already taken in this run gets `-2`, `-3`, … in input order, so two tracks never share
/// a folder.
pub fn plan_tracks(files: &[PathBuf], output: Option<&Path>) -> Vec<Track> {
    if let ([file], Some(dir)) = (files, output) {
        return vec![Track {
            input: file.clone(),
            output: dir.to_path_buf(),
        }];
    }
    let base = output.map_or_else(|| PathBuf::from(DEFAULT_OUTPUT), Path::to_path_buf);
    let mut taken = HashSet::new();
    files
        .iter()
        .map(|file| {
            let name = file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "track".into());
            let mut candidate = name.clone();
            let mut n = 1;
            while !taken.insert(candidate.clone()) {
                n += 1;
                candidate = format!("{name}-{n}");
            }
            Track {
                input: file.clone(),
                output: base.join(candidate),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_file_with_an_output_folder_writes_into_that_folder() {
        let tracks = plan_tracks(&[PathBuf::from("a/mix.wav")], Some(Path::new("out")));
        assert_eq!(tracks[0].output, PathBuf::from("out"));
        let tracks = plan_tracks(&[PathBuf::from("a/mix.wav")], None);
        assert_eq!(tracks[0].output, PathBuf::from("stems/mix"));
    }

    #[test]
    fn tracks_with_the_same_name_get_their_own_folders() {
        let files = [
            PathBuf::from("a/song.wav"),
            PathBuf::from("b/song.flac"),
            PathBuf::from("c/song.wav"),
            PathBuf::from("other.mp3"),
        ];
        let outputs: Vec<PathBuf> = plan_tracks(&files, Some(Path::new("out")))
            .into_iter()
            .map(|t| t.output)
            .collect();
        assert_eq!(
            outputs,
            ["out/song", "out/song-2", "out/song-3", "out/other"].map(PathBuf::from)
        );
    }

    #[test]
    fn folders_are_searched_recursively_for_audio_in_path_order() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path();
        std::fs::create_dir_all(dir.join("album/disc2")).unwrap();
        for name in [
            "album/b.WAV",
            "album/a.flac",
            "album/disc2/c.mp3",
            "album/notes.txt",
        ] {
            std::fs::write(dir.join(name), b"").unwrap();
        }
        let single = dir.join("single.ogg");
        std::fs::write(&single, b"").unwrap();
        let files = expand_inputs(&[single.clone(), dir.join("album")]);
        assert_eq!(
            files,
            vec![
                single,
                dir.join("album/a.flac"),
                dir.join("album/b.WAV"),
                dir.join("album/disc2/c.mp3"),
            ]
        );
    }
}
