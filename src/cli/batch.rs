//! Which files a `separate` run takes and where each one's stems go: inputs are files and
//! folders (searched recursively for audio), and every track gets its own output folder, named
//! after the file, never shared with another track.

use super::track_lock::LOCK_FILE;
use super::track_record::RECORD_FILE;
use super::walk::find_files;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// File extensions (lower case) a folder search takes as audio.
pub const AUDIO_EXTENSIONS: [&str; 8] = ["wav", "flac", "ogg", "mp3", "m4a", "aiff", "aif", "wave"];

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
/// by path; see [`find_files`]), each file once. Output folders are left out: a folder holding a
/// track's record or lock (stems a run wrote, or is writing), and `output`, the run's own output
/// folder, unless it was given as an input itself. A folder with unreadable parts contributes what
/// can be read; a path that does not exist is kept, so separating it reports the error for that
/// track.
pub fn expand_inputs(inputs: &[PathBuf], output: &Path) -> Vec<PathBuf> {
    let given: Vec<PathBuf> = inputs.iter().filter_map(|p| p.canonicalize().ok()).collect();
    let output = output.canonicalize().ok().filter(|o| !given.contains(o));
    let skip = |dir: &Path| {
        dir.join(RECORD_FILE).exists()
            || dir.join(LOCK_FILE).exists()
            || output
                .as_ref()
                .is_some_and(|o| dir.canonicalize().is_ok_and(|d| d == *o))
    };
    find_files(inputs, &AUDIO_EXTENSIONS, &skip)
}

/// The folder name of the track read from `file`: the file's name without its extension, made a
/// safe single path component. Leading dots go (`...wav` would be `..`, the parent folder, and a
/// hidden name could be taken for Stemflow's own files), as do control characters and path
/// separators (`_` instead); a name longer than [`MAX_NAME_BYTES`] is cut at a character boundary
/// so a `-N` suffix still fits the file system; nothing left gives `track`.
pub fn track_name(file: &Path) -> String {
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut name: String = stem
        .trim_start_matches('.')
        .chars()
        .map(|c| {
            if c.is_control() || matches!(c, '/' | '\\') {
                '_'
            } else {
                c
            }
        })
        .collect();
    if name.len() > MAX_NAME_BYTES {
        let mut cut = MAX_NAME_BYTES;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        name.truncate(cut);
    }
    if name.trim().is_empty() {
        "track".into()
    } else {
        name
    }
}

/// The longest track name in bytes: file systems hold 255, and `-N` must fit after it.
pub const MAX_NAME_BYTES: usize = 200;

/// Output folders for `files`. One file with `-o DIR`: `DIR` itself, as `separate` always did.
/// Otherwise `<DIR or stems>/<track>`, the track named by [`track_name`] (`song.flac` → `song`);
/// a name (compared without regard to case) already taken in this run gets `-2`, `-3`, … in input order, so two tracks never share
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
            let name = track_name(file);
            let mut candidate = name.clone();
            let mut n = 1;
            // Case-blind, so two tracks never share a folder on a case-insensitive file system.
            while !taken.insert(candidate.to_lowercase()) {
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
        let files = expand_inputs(&[single.clone(), dir.join("album")], &dir.join("stems"));
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

    #[test]
    fn track_names_are_safe_single_path_components() {
        let name = |file: &str| track_name(Path::new(file));
        assert_eq!(name("a/...wav"), "track");
        assert_eq!(name("a/..wav"), "track");
        assert_eq!(name("a/.wav"), "wav");
        assert_eq!(name("a/.stemflow.lock.wav"), "stemflow.lock");
        assert_eq!(name("a/..song.wav"), "song");
        assert_eq!(name("a/b\\c\u{7}d.wav"), "b_c_d");
        assert_eq!(name("a/  .wav"), "track");
        assert_eq!(name("a/my song.v2.flac"), "my song.v2");
        let long = format!("{}.wav", "é".repeat(127));
        assert_eq!(name(&long), "é".repeat(100));
        let files = [PathBuf::from("x/...wav"), PathBuf::from("y/..wav")];
        let outputs: Vec<PathBuf> = plan_tracks(&files, Some(Path::new("out")))
            .into_iter()
            .map(|t| t.output)
            .collect();
        assert_eq!(outputs, ["out/track", "out/track-2"].map(PathBuf::from));
    }

    #[test]
    fn names_differing_only_in_case_get_their_own_folders() {
        let files = [PathBuf::from("a/Song.wav"), PathBuf::from("b/song.wav")];
        let outputs: Vec<PathBuf> = plan_tracks(&files, None).into_iter().map(|t| t.output).collect();
        assert_eq!(outputs, ["stems/Song", "stems/song-2"].map(PathBuf::from));
    }

    #[test]
    fn output_folders_are_not_inputs() {
        let tmp = tempfile::tempdir().unwrap();
        let album = tmp.path();
        for name in [
            "song.wav",
            "stems/old/bass.wav",
            "elsewhere/done/bass.wav",
            "work/x/bass.wav",
        ] {
            std::fs::create_dir_all(album.join(name).parent().unwrap()).unwrap();
            std::fs::write(album.join(name), b"").unwrap();
        }
        std::fs::write(album.join("elsewhere/done").join(RECORD_FILE), b"{}").unwrap();
        std::fs::write(album.join("work/x").join(LOCK_FILE), b"").unwrap();
        assert_eq!(
            expand_inputs(&[album.to_path_buf()], &album.join("stems")),
            vec![album.join("song.wav")]
        );
        // The output folder given as an input is searched (its records still leave tracks out).
        assert_eq!(
            expand_inputs(&[album.join("stems")], &album.join("stems")),
            vec![album.join("stems/old/bass.wav")]
        );
    }
}
