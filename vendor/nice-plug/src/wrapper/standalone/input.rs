//! A source for the standalone's main input that replaces whatever the backend delivers, for
//! instance a decoded audio file. The wrapper has no decoder of its own: the application decodes
//! and hands the samples over through this trait.

/// Feeds the plugin's main input in place of the backend's input.
///
/// [`prepare()`][Self::prepare()] is called once on the thread that creates the wrapper, before
/// the plugin is activated, and may allocate. [`fill()`][Self::fill()] is called on the audio
/// thread before every process call and must not allocate, lock or block (it runs inside the same
/// allocation check as the plugin's `process()` when `assert_process_allocs` is enabled).
pub trait InputSource: Send + 'static {
    /// The wrapper's sample rate, its largest block and the main input's channel count, fixed for
    /// the whole run.
    /// An error ends the standalone before the plugin is activated, with the error's message.
    fn prepare(
        &mut self,
        sample_rate: f32,
        max_block_size: usize,
        channels: usize,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;

    /// Overwrites the main input: `channels[c][i]` is sample `i` of channel `c` of the next block.
    /// Every channel has the block's length; the source writes every sample (silence once it has
    /// nothing more to play).
    fn fill(&mut self, channels: &mut [&mut [f32]]);
}
