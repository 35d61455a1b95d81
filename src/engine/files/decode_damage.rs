//! Packets of an input the decoder could not decode. Each is replaced by silence of its length, so
//! the stems stay aligned with the input, and the run warns where it happened — what ffmpeg and sox
//! do with a damaged MP3 frame — unless so many are damaged that the file is refused as corrupt
//! ([`crate::engine::limits::DAMAGED_PACKETS_TOLERATED`]).

/// What was replaced by silence while one file was decoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecodeDamage {
    /// Packets the decoder failed on.
    pub packets: u64,
    /// Sample frames of silence put in their place.
    pub silent_frames: u64,
    /// Where the first damaged packet starts, in sample frames from the start of the file.
    pub first_at_frame: Option<u64>,
}

impl DecodeDamage {
    /// Whether nothing was replaced.
    pub fn is_none(&self) -> bool {
        self.packets == 0
    }

    /// Records a damaged packet at `at_frame` replaced by `silent_frames` of silence.
    pub fn record(&mut self, at_frame: u64, silent_frames: u64) {
        self.packets += 1;
        self.silent_frames += silent_frames;
        self.first_at_frame.get_or_insert(at_frame);
    }

    /// One sentence for a warning, e.g. "2 damaged packets (first at 12.3 s) were replaced by
    /// 0.052 s of silence".
    pub fn describe(&self, sample_rate: u32) -> String {
        let seconds = |frames: u64| frames as f64 / f64::from(sample_rate.max(1));
        format!(
            "{} damaged packet{} (the first at {:.3} s) could not be decoded and {} replaced by \
             {:.3} s of silence, so the stems stay aligned with the input",
            self.packets,
            if self.packets == 1 { "" } else { "s" },
            seconds(self.first_at_frame.unwrap_or(0)),
            if self.packets == 1 { "was" } else { "were" },
            seconds(self.silent_frames),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_the_first_position_and_sums_the_silence() {
        let mut damage = DecodeDamage::default();
        assert!(damage.is_none());
        damage.record(44_100, 1152);
        damage.record(88_200, 1152);
        assert_eq!(damage.packets, 2);
        assert_eq!(damage.silent_frames, 2304);
        assert_eq!(damage.first_at_frame, Some(44_100));
        let text = damage.describe(44_100);
        assert!(
            text.starts_with("2 damaged packets (the first at 1.000 s)"),
            "{text}"
        );
        assert!(text.contains("0.052 s of silence"), "{text}");
    }
}
