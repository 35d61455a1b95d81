//! The interval a number must lie in, written once and shown the same way everywhere: settings
//! validation, the command line's messages and the plugin's parameter ranges all read it.

use std::fmt;

/// A closed or half-open interval `[min, max]`, `(min, max]` or `[min, max)` of allowed values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    /// Lowest value (allowed unless `min_open`).
    pub min: f64,
    /// Highest value (allowed unless `max_open`).
    pub max: f64,
    /// `min` itself is not allowed.
    pub min_open: bool,
    /// `max` itself is not allowed.
    pub max_open: bool,
}

impl Bounds {
    /// `[min, max]`.
    pub const fn closed(min: f64, max: f64) -> Bounds {
        Bounds {
            min,
            max,
            min_open: false,
            max_open: false,
        }
    }

    /// `(min, max]`.
    pub const fn above(min: f64, max: f64) -> Bounds {
        Bounds {
            min,
            max,
            min_open: true,
            max_open: false,
        }
    }

    /// `[min, max)`.
    pub const fn below(min: f64, max: f64) -> Bounds {
        Bounds {
            min,
            max,
            min_open: false,
            max_open: true,
        }
    }

    /// Whether `value` is finite and inside.
    pub fn contains(&self, value: f64) -> bool {
        let above_min = if self.min_open {
            value > self.min
        } else {
            value >= self.min
        };
        let below_max = if self.max_open {
            value < self.max
        } else {
            value <= self.max
        };
        value.is_finite() && above_min && below_max
    }
}

impl fmt::Display for Bounds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let open = if self.min_open { '(' } else { '[' };
        let close = if self.max_open { ')' } else { ']' };
        write!(f, "{open}{}, {}{close}", self.min, self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_are_in_or_out_as_written_and_shown_so() {
        let b = Bounds::below(0.0, 0.5);
        assert!(b.contains(0.0) && b.contains(0.49) && !b.contains(0.5) && !b.contains(-0.1));
        assert_eq!(b.to_string(), "[0, 0.5)");
        let a = Bounds::above(0.0, 1.0);
        assert!(!a.contains(0.0) && a.contains(1.0));
        assert_eq!(a.to_string(), "(0, 1]");
        let c = Bounds::closed(8000.0, 384000.0);
        assert!(c.contains(8000.0) && c.contains(384000.0) && !c.contains(f64::NAN));
        assert_eq!(c.to_string(), "[8000, 384000]");
    }
}
