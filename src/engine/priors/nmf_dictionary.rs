//! A prior's optional KL-NMF dictionary (`nmf.bin`, CONTRACT.md "NMF dictionary"): spectral atoms
//! learned from the same isolated recordings as the flow, which the separator's NMF expert fits
//! to a mixture beside the flow's search.

use serde::{Deserialize, Serialize};

/// The STFT window a dictionary must be learned on (the engine's STFT has only this one).
pub const DICTIONARY_WINDOW: &str = "hann-periodic";
/// The STFT framing a dictionary must be learned on.
pub const DICTIONARY_CENTER: &str = "zero";
/// STFT sizes a dictionary may use: even, from 16 to 16384 samples at 22.05 kHz.
pub const DICTIONARY_N_FFT: std::ops::RangeInclusive<usize> = 16..=16_384;
/// Atoms a dictionary may hold.
pub const DICTIONARY_ATOMS: std::ops::RangeInclusive<usize> = 1..=1024;

/// The manifest's `nmf` section: the dictionary's file and the STFT it was learned on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NmfSection {
    /// File name inside the prior folder.
    pub file: String,
    /// Lower-case hex sha256 of the file.
    pub sha256: String,
    /// STFT size at 22.05 kHz.
    pub n_fft: usize,
    /// STFT hop at 22.05 kHz.
    pub hop: usize,
    /// STFT window name.
    pub window: String,
    /// STFT framing convention.
    pub center: String,
    /// Number of atoms (columns).
    pub atoms: usize,
    /// Frequency bins (rows): `n_fft / 2 + 1`.
    pub bins: usize,
    /// Descriptive: how the dictionary was learned.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub training: serde_json::Value,
}

/// Why a dictionary cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DictionaryError {
    /// A field of the `nmf` section is outside what the engine supports.
    #[error("manifest field `nmf.{field}`: expected {expected}, found {found}")]
    Field {
        /// The field.
        field: &'static str,
        /// What the engine needs.
        expected: String,
        /// What the manifest says.
        found: String,
    },
    /// The file's size does not match `bins × atoms` float32 values.
    #[error("{file}: expected {expected} bytes ({bins} bins × {atoms} atoms of float32), found {found}")]
    Size {
        /// The file name.
        file: String,
        /// `bins × atoms × 4`.
        expected: usize,
        /// Its size.
        found: usize,
        /// Rows.
        bins: usize,
        /// Columns.
        atoms: usize,
    },
    /// A value is negative, NaN or infinite.
    #[error("{file}: expected finite non-negative values, found {found} at bin {bin}, atom {atom}")]
    Value {
        /// The file name.
        file: String,
        /// Its row.
        bin: usize,
        /// Its column.
        atom: usize,
        /// The value.
        found: f32,
    },
    /// An atom is all zeros, so it explains nothing and cannot be fitted.
    #[error("{file}: atom {atom} is all zeros")]
    EmptyAtom {
        /// The file name.
        file: String,
        /// The column.
        atom: usize,
    },
}

/// A checked dictionary: `bins × atoms` non-negative values, bin-major (`values[b * atoms + k]`).
#[derive(Debug, Clone, PartialEq)]
pub struct NmfDictionary {
    /// STFT size it was learned on (22.05 kHz).
    pub n_fft: usize,
    /// STFT hop it was learned on.
    pub hop: usize,
    /// Rows: `n_fft / 2 + 1`.
    pub bins: usize,
    /// Columns.
    pub atoms: usize,
    /// The atoms, bin-major.
    pub values: Vec<f32>,
}

impl NmfDictionary {
    /// Checks the section against the engine's limits and `bytes` (the verified file, little-endian
    /// float32) against the section's shape.
    pub fn from_bytes(section: &NmfSection, bytes: &[u8]) -> Result<NmfDictionary, DictionaryError> {
        check_section(section)?;
        let (bins, atoms) = (section.bins, section.atoms);
        let expected = bins * atoms * 4;
        if bytes.len() != expected {
            return Err(DictionaryError::Size {
                file: section.file.clone(),
                expected,
                found: bytes.len(),
                bins,
                atoms,
            });
        }
        let values: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        if let Some(i) = values.iter().position(|v| !(v.is_finite() && *v >= 0.0)) {
            return Err(DictionaryError::Value {
                file: section.file.clone(),
                bin: i / atoms,
                atom: i % atoms,
                found: values[i],
            });
        }
        if let Some(atom) = (0..atoms).find(|&k| (0..bins).all(|b| values[b * atoms + k] == 0.0)) {
            return Err(DictionaryError::EmptyAtom {
                file: section.file.clone(),
                atom,
            });
        }
        Ok(NmfDictionary {
            n_fft: section.n_fft,
            hop: section.hop,
            bins,
            atoms,
            values,
        })
    }
}

/// The section's STFT and shape fields against the engine's limits.
fn check_section(section: &NmfSection) -> Result<(), DictionaryError> {
    let field = |field, expected: String, found: String| DictionaryError::Field {
        field,
        expected,
        found,
    };
    if section.window != DICTIONARY_WINDOW {
        return Err(field(
            "window",
            format!("`{DICTIONARY_WINDOW}`"),
            format!("`{}`", section.window),
        ));
    }
    if section.center != DICTIONARY_CENTER {
        return Err(field(
            "center",
            format!("`{DICTIONARY_CENTER}`"),
            format!("`{}`", section.center),
        ));
    }
    if !DICTIONARY_N_FFT.contains(&section.n_fft) || !section.n_fft.is_multiple_of(2) {
        return Err(field(
            "n_fft",
            format!(
                "an even size in {}..={}",
                DICTIONARY_N_FFT.start(),
                DICTIONARY_N_FFT.end()
            ),
            section.n_fft.to_string(),
        ));
    }
    if section.hop == 0 || section.hop > section.n_fft {
        return Err(field(
            "hop",
            format!("a hop in 1..={}", section.n_fft),
            section.hop.to_string(),
        ));
    }
    if section.bins != section.n_fft / 2 + 1 {
        return Err(field(
            "bins",
            format!("{} (n_fft / 2 + 1)", section.n_fft / 2 + 1),
            section.bins.to_string(),
        ));
    }
    if !DICTIONARY_ATOMS.contains(&section.atoms) {
        return Err(field(
            "atoms",
            format!(
                "a count in {}..={}",
                DICTIONARY_ATOMS.start(),
                DICTIONARY_ATOMS.end()
            ),
            section.atoms.to_string(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(bins: usize, atoms: usize) -> NmfSection {
        NmfSection {
            file: "nmf.bin".into(),
            sha256: String::new(),
            n_fft: (bins - 1) * 2,
            hop: (bins - 1) / 2,
            window: DICTIONARY_WINDOW.into(),
            center: DICTIONARY_CENTER.into(),
            atoms,
            bins,
            training: serde_json::Value::Null,
        }
    }

    fn bytes(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn a_dictionary_reads_bin_major_little_endian_float32() {
        let values: Vec<f32> = (0..9 * 2).map(|i| i as f32 + 1.0).collect();
        let d = NmfDictionary::from_bytes(&section(9, 2), &bytes(&values)).unwrap();
        assert_eq!((d.bins, d.atoms, d.n_fft, d.hop), (9, 2, 16, 4));
        assert_eq!(d.values, values);
    }

    #[test]
    fn a_bad_dictionary_is_refused_with_what_was_expected() {
        let ok = vec![0.5f32; 9 * 2];
        let err = NmfDictionary::from_bytes(&section(9, 2), &bytes(&ok[..17])).unwrap_err();
        assert!(
            matches!(
                err,
                DictionaryError::Size {
                    expected: 72,
                    found: 68,
                    ..
                }
            ),
            "{err}"
        );
        let mut bad = ok.clone();
        bad[5] = -1.0;
        let err = NmfDictionary::from_bytes(&section(9, 2), &bytes(&bad)).unwrap_err();
        assert_eq!(
            err,
            DictionaryError::Value {
                file: "nmf.bin".into(),
                bin: 2,
                atom: 1,
                found: -1.0
            }
        );
        bad[5] = f32::NAN;
        assert!(NmfDictionary::from_bytes(&section(9, 2), &bytes(&bad)).is_err());
        let mut empty = ok.clone();
        for b in 0..9 {
            empty[b * 2] = 0.0;
        }
        let err = NmfDictionary::from_bytes(&section(9, 2), &bytes(&empty)).unwrap_err();
        assert!(matches!(err, DictionaryError::EmptyAtom { atom: 0, .. }), "{err}");
        let wrong_bins = NmfSection {
            bins: 10,
            ..section(9, 2)
        };
        let err = NmfDictionary::from_bytes(&wrong_bins, &bytes(&ok)).unwrap_err();
        assert!(err.to_string().contains("nmf.bins"), "{err}");
        let wrong_window = NmfSection {
            window: "hamming".into(),
            ..section(9, 2)
        };
        let err = NmfDictionary::from_bytes(&wrong_window, &bytes(&ok)).unwrap_err();
        assert!(err.to_string().contains("nmf.window"), "{err}");
    }
}
