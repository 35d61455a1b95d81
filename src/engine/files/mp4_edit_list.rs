//! The part of an MP4 / M4A file's sound track that is meant to be heard, from its edit list.
//!
//! An AAC encoder starts every stream with priming samples (1024 or 2112) and pads the end to a
//! whole packet; the container's edit list (`moov/trak/edts/elst`) says which span of the decoded
//! samples is the audio. symphonia's MP4 demuxer does not read edit lists, so without this the
//! stems of an M4A start late and run long against the input.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// Largest `moov` box read into memory: the index of an hour of AAC is about 1 MB; a bigger one is
/// no audio file this reader trims.
const MAX_MOOV_BYTES: u64 = 16 << 20;

/// The span of decoded sample frames an edit list keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EditSpan {
    /// Decoded frames before the audio starts (the encoder's priming).
    pub skip_frames: u64,
    /// Frames of audio from there on.
    pub keep_frames: u64,
}

/// Reads the edit list of the first sound track of the MP4 file at `path`, in frames at
/// `sample_rate`. `None` when the file is no MP4, has no sound track or no edit list, or an edit
/// list other than one plain edit (an empty edit or a changed rate), which is then decoded as it is.
pub fn sound_track_span(path: &Path, sample_rate: u32) -> Option<EditSpan> {
    let mut file = File::open(path).ok()?;
    let moov = read_moov(&mut file)?;
    let movie_timescale = timescale(child(&moov, b"mvhd")?)?;
    let span = children(&moov)
        .filter(|(kind, _)| kind == b"trak")
        .find_map(|(_, trak)| {
            let mdia = child(trak, b"mdia")?;
            let handler = child(mdia, b"hdlr")?;
            (handler.get(8..12)? == b"soun").then_some(())?;
            let media_timescale = timescale(child(mdia, b"mdhd")?)?;
            let edit = single_edit(child(child(trak, b"edts")?, b"elst")?)?;
            let frames = |ticks: u64, scale: u32| {
                let exact = u128::from(ticks) * u128::from(sample_rate);
                let scale = u128::from(scale);
                u64::try_from((exact + scale / 2) / scale).ok()
            };
            Some(EditSpan {
                skip_frames: frames(edit.media_time, media_timescale)?,
                keep_frames: frames(edit.segment_duration, movie_timescale)?,
            })
        });
    span
}

/// One edit: where in the media it starts and how long it lasts.
struct Edit {
    /// Length in the movie's timescale.
    segment_duration: u64,
    /// Start in the media's timescale.
    media_time: u64,
}

/// The edit of an `elst` payload that holds exactly one plain edit (rate 1, not empty).
fn single_edit(elst: &[u8]) -> Option<Edit> {
    let version = *elst.first()?;
    let count = be_u32(elst.get(4..8)?);
    if count != 1 {
        return None;
    }
    let entry = elst.get(8..)?;
    let (segment_duration, media_time, rate) = if version == 1 {
        (
            be_u64(entry.get(0..8)?),
            be_u64(entry.get(8..16)?) as i64,
            entry.get(16..20)?,
        )
    } else {
        (
            u64::from(be_u32(entry.get(0..4)?)),
            i64::from(be_u32(entry.get(4..8)?) as i32),
            entry.get(8..12)?,
        )
    };
    let plain_rate = rate == [0, 1, 0, 0];
    (media_time >= 0 && plain_rate && segment_duration > 0).then_some(Edit {
        segment_duration,
        media_time: media_time as u64,
    })
}

/// The timescale of an `mvhd` or `mdhd` payload.
fn timescale(header: &[u8]) -> Option<u32> {
    let at = if *header.first()? == 1 { 20 } else { 12 };
    let scale = be_u32(header.get(at..at + 4)?);
    (scale > 0).then_some(scale)
}

/// The payload of the file's top-level `moov` box, if the file is a sequence of MP4 boxes
/// starting with `ftyp` and has one of a readable size.
fn read_moov(file: &mut File) -> Option<Vec<u8>> {
    let length = file.metadata().ok()?.len();
    let mut at = 0u64;
    let mut first = true;
    while at + 8 <= length {
        file.seek(SeekFrom::Start(at)).ok()?;
        let mut header = [0u8; 16];
        file.read_exact(&mut header[..8]).ok()?;
        let kind: [u8; 4] = header[4..8].try_into().ok()?;
        if first && &kind != b"ftyp" {
            return None;
        }
        first = false;
        let (size, header_len) = match be_u32(&header[..4]) {
            0 => (length - at, 8),
            1 => {
                file.read_exact(&mut header[8..16]).ok()?;
                (be_u64(&header[8..16]), 16)
            }
            size => (u64::from(size), 8),
        };
        if size < header_len || at + size > length {
            return None;
        }
        if &kind == b"moov" {
            let payload = size - header_len;
            if payload > MAX_MOOV_BYTES {
                return None;
            }
            let mut moov = vec![0u8; payload as usize];
            file.read_exact(&mut moov).ok()?;
            return Some(moov);
        }
        at += size;
    }
    None
}

/// The boxes in `payload`, as (type, payload) pairs; stops at the first malformed one.
fn children(payload: &[u8]) -> impl Iterator<Item = ([u8; 4], &[u8])> + '_ {
    let mut rest = payload;
    std::iter::from_fn(move || {
        let size = be_u32(rest.get(0..4)?) as usize;
        let kind: [u8; 4] = rest.get(4..8)?.try_into().ok()?;
        let (header_len, size) = match size {
            0 => (8, rest.len()),
            1 => (16, usize::try_from(be_u64(rest.get(8..16)?)).ok()?),
            size => (8, size),
        };
        let body = rest.get(header_len..size)?;
        rest = &rest[size..];
        Some((kind, body))
    })
}

/// The payload of the first child box of `kind` in `payload`.
fn child<'a>(payload: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    children(payload).find(|(k, _)| k == kind).map(|(_, body)| body)
}

/// A big-endian u32 from 4 bytes.
fn be_u32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes(bytes.try_into().expect("4 bytes"))
}

/// A big-endian u64 from 8 bytes.
fn be_u64(bytes: &[u8]) -> u64 {
    u64::from_be_bytes(bytes.try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A box of `kind` around `payload`.
    fn mp4_box(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut out = ((payload.len() + 8) as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(payload);
        out
    }

    /// A version-0 `mvhd`/`mdhd` payload with `scale`.
    fn header(scale: u32) -> Vec<u8> {
        let mut out = vec![0u8; 12];
        out.extend_from_slice(&scale.to_be_bytes());
        out.extend_from_slice(&[0u8; 8]);
        out
    }

    /// A version-0 `elst` payload of (segment duration, media time) entries at rate 1.
    fn elst(entries: &[(u32, i32)]) -> Vec<u8> {
        let mut out = vec![0u8; 4];
        out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
        for (duration, time) in entries {
            out.extend_from_slice(&duration.to_be_bytes());
            out.extend_from_slice(&time.to_be_bytes());
            out.extend_from_slice(&[0, 1, 0, 0]);
        }
        out
    }

    /// A file of `ftyp` and a `moov` with one track of `handler` and `entries` in its edit list.
    fn file(handler: &[u8; 4], entries: &[(u32, i32)]) -> tempfile::NamedTempFile {
        let mut hdlr = vec![0u8; 8];
        hdlr.extend_from_slice(handler);
        hdlr.extend_from_slice(&[0u8; 13]);
        let mdia = [mp4_box(b"mdhd", &header(44_100)), mp4_box(b"hdlr", &hdlr)].concat();
        let trak = [
            mp4_box(b"edts", &mp4_box(b"elst", &elst(entries))),
            mp4_box(b"mdia", &mdia),
        ]
        .concat();
        let moov = [mp4_box(b"mvhd", &header(1000)), mp4_box(b"trak", &trak)].concat();
        let bytes = [
            mp4_box(b"ftyp", b"M4A \0\0\0\0"),
            mp4_box(b"mdat", &[0u8; 32]),
            mp4_box(b"moov", &moov),
        ]
        .concat();
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), bytes).unwrap();
        file
    }

    #[test]
    fn one_plain_edit_gives_the_priming_and_the_length() {
        let f = file(b"soun", &[(2000, 1024)]);
        let span = sound_track_span(f.path(), 44_100).unwrap();
        assert_eq!(
            span,
            EditSpan {
                skip_frames: 1024,
                keep_frames: 88_200
            }
        );
        // At another output rate the same edit scales.
        let span = sound_track_span(f.path(), 22_050).unwrap();
        assert_eq!(span.skip_frames, 512);
        assert_eq!(span.keep_frames, 44_100);
    }

    #[test]
    fn edits_it_cannot_apply_and_files_it_does_not_know_give_none() {
        assert_eq!(
            sound_track_span(file(b"vide", &[(2000, 1024)]).path(), 44_100),
            None
        );
        assert_eq!(
            sound_track_span(file(b"soun", &[(500, -1), (2000, 0)]).path(), 44_100),
            None
        );
        assert_eq!(sound_track_span(file(b"soun", &[]).path(), 44_100), None);
        let not_mp4 = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(not_mp4.path(), b"RIFF\0\0\0\0WAVEfmt ").unwrap();
        assert_eq!(sound_track_span(not_mp4.path(), 44_100), None);
    }

    #[test]
    fn truncated_and_oversized_boxes_give_none_not_a_panic() {
        let f = file(b"soun", &[(2000, 1024)]);
        let bytes = std::fs::read(f.path()).unwrap();
        for cut in [9, 20, bytes.len() / 2, bytes.len() - 3] {
            let t = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(t.path(), &bytes[..cut]).unwrap();
            assert_eq!(sound_track_span(t.path(), 44_100), None, "cut at {cut}");
        }
        let mut huge = bytes.clone();
        huge[0..4].copy_from_slice(&u32::MAX.to_be_bytes());
        let t = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(t.path(), huge).unwrap();
        assert_eq!(sound_track_span(t.path(), 44_100), None);
    }
}
