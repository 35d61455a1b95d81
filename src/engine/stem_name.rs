//! What a stem may be called: the one rule for a prior's `stem` (its folder's name), a name given
//! to `train-prior`, and the file name of a written stem.

/// Whether `name` is a valid stem name: `[a-z0-9][a-z0-9_-]*` — a single path component on every
/// system, never hidden, the same on case-insensitive file systems.
pub fn is_valid_stem_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stem_names_follow_the_pattern() {
        for ok in ["bass", "drums2", "lead-vox", "e_guitar", "9"] {
            assert!(is_valid_stem_name(ok), "{ok}");
        }
        for bad in ["", "Bass", "-x", "_x", ".x", "../x", "a/b", "a b", "é", "x\0"] {
            assert!(!is_valid_stem_name(bad), "{bad}");
        }
    }
}
