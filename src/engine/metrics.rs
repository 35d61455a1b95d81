//! Separation quality: the Music Demixing Challenge's global SDR, per segment.

/// Reference energy below which a segment counts as silent and is skipped (the SDR of a silent
/// reference is undefined).
pub const SILENT_SEGMENT_ENERGY: f64 = 1e-8;

/// 10·log10(Σ s² / Σ (s − ŝ)²) over the samples given, in dB (MDX "global SDR"). A tiny
/// constant keeps a perfect estimate finite.
pub fn global_sdr(reference: &[f32], estimate: &[f32]) -> f64 {
    assert_eq!(
        reference.len(),
        estimate.len(),
        "reference and estimate differ in length"
    );
    let (signal, error) = reference
        .iter()
        .zip(estimate)
        .fold((0.0f64, 0.0f64), |(s, e), (&r, &x)| {
            let d = f64::from(r) - f64::from(x);
            (s + f64::from(r) * f64::from(r), e + d * d)
        });
    10.0 * ((signal + 1e-12) / (error + 1e-12)).log10()
}

/// Global SDR of every `segment_len`-sample segment whose reference is not silent; channels are
/// given as separate slices and pooled per segment.
pub fn segment_sdrs(reference: &[&[f32]], estimate: &[&[f32]], segment_len: usize) -> Vec<f64> {
    assert_eq!(
        reference.len(),
        estimate.len(),
        "reference and estimate differ in channels"
    );
    assert!(segment_len > 0, "segment length must be positive");
    let len = reference.iter().map(|c| c.len()).min().unwrap_or(0);
    let mut out = Vec::new();
    let mut start = 0;
    while start < len {
        let end = (start + segment_len).min(len);
        let (mut signal, mut error) = (0.0f64, 0.0f64);
        for (r, e) in reference.iter().zip(estimate) {
            for (&r, &x) in r[start..end].iter().zip(&e[start..end]) {
                let d = f64::from(r) - f64::from(x);
                signal += f64::from(r) * f64::from(r);
                error += d * d;
            }
        }
        if signal > SILENT_SEGMENT_ENERGY {
            out.push(10.0 * ((signal + 1e-12) / (error + 1e-12)).log10());
        }
        start = end;
    }
    out
}

/// Median of a list (NaN for an empty one).
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        0.5 * (sorted[n / 2 - 1] + sorted[n / 2])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdr_of_half_amplitude_estimate_is_6_db() {
        let r: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.1).sin()).collect();
        let e: Vec<f32> = r.iter().map(|x| 0.5 * x).collect();
        assert!((global_sdr(&r, &e) - 6.0206).abs() < 1e-3);
    }

    #[test]
    fn silent_segments_are_skipped() {
        let mut r = vec![0.0f32; 300];
        r[200..]
            .iter_mut()
            .enumerate()
            .for_each(|(i, x)| *x = (i as f32).cos());
        let e = vec![0.0f32; 300];
        let sdrs = segment_sdrs(&[&r], &[&e], 100);
        assert_eq!(sdrs.len(), 1);
        assert!(sdrs[0].abs() < 1e-6);
    }

    #[test]
    fn median_of_even_and_odd_lists() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
