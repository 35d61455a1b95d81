//! The priors as the Langevin searches' score sources: each prior's `score` graph
//! ([`ScoreSource`]) or its noise-conditioned `noisy_score` ([`NoisyScoreSource`]), over
//! magnitudes, or either over waveforms for time-domain priors ([`WaveformScoreSource`]), the
//! stems side by side on the settings' threads.

use super::annealed_langevin::NoisyScoreSource;
use super::langevin::ScoreSource;
use super::latent_search::SearchError;
use super::waveform_langevin::WaveformScoreSource;
use crate::engine::priors::prior::Prior;
use crate::engine::priors::prior_error::PriorError;
use crate::engine::spread::spread;

/// Borrowed priors (in stem order) and the threads to score them on.
pub struct PriorScores<'a> {
    /// One prior per stem; each must have the graph the search uses ([`Prior::has_score`],
    /// [`Prior::has_noisy_score`]).
    pub priors: &'a mut [Prior],
    /// Threads the stems' graphs run on side by side.
    pub threads: usize,
}

impl PriorScores<'_> {
    /// Runs `graph` for every stem (its prior, its state, its score buffer) on the threads; the
    /// graphs' log-densities are dropped, as no search reads them.
    fn each_stem(
        &mut self,
        stems: &[Vec<f32>],
        scores: &mut [Vec<f32>],
        graph: &(impl Fn(&mut Prior, &[f32], &mut [f32]) -> Result<f32, PriorError> + Sync),
    ) -> Result<(), SearchError> {
        let items: Vec<_> = self.priors.iter_mut().zip(stems).zip(scores.iter_mut()).collect();
        spread(self.threads, items, &|((prior, state), score)| {
            graph(prior, state, score)
        })?;
        Ok(())
    }
}

impl ScoreSource for PriorScores<'_> {
    fn stem_count(&self) -> usize {
        self.priors.len()
    }

    fn scores_into(
        &mut self,
        stems: &[Vec<f32>],
        frames: usize,
        scores: &mut [Vec<f32>],
    ) -> Result<(), SearchError> {
        self.each_stem(stems, scores, &|prior, s, score| {
            prior.score_into(s, frames, score)
        })
    }
}

impl NoisyScoreSource for PriorScores<'_> {
    fn stem_count(&self) -> usize {
        self.priors.len()
    }

    fn noisy_scores_into(
        &mut self,
        stems: &[Vec<f32>],
        frames: usize,
        sigma: f32,
        scores: &mut [Vec<f32>],
    ) -> Result<(), SearchError> {
        self.each_stem(stems, scores, &|prior, s, score| {
            prior.noisy_score_into(s, frames, sigma, score)
        })
    }
}

impl WaveformScoreSource for PriorScores<'_> {
    fn stem_count(&self) -> usize {
        self.priors.len()
    }

    fn waveform_scores_into(
        &mut self,
        stems: &[Vec<f32>],
        sigma: Option<f32>,
        scores: &mut [Vec<f32>],
    ) -> Result<(), SearchError> {
        self.each_stem(stems, scores, &|prior, x, score| match sigma {
            Some(sigma) => prior.waveform_noisy_score_into(x, sigma, score),
            None => prior.waveform_score_into(x, score),
        })
    }
}
