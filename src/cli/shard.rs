//! `--shard K/N`: this run's share of a catalogue spread over N machines or jobs. Every run is
//! given the same inputs and takes the tracks at positions K, K+N, K+2N, … (from 1) of the list
//! sorted by input path, so N runs cover each track exactly once with nothing to coordinate.

use std::fmt;
use std::str::FromStr;

/// Share K of N.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// Which share, from 1.
    pub index: usize,
    /// How many shares.
    pub count: usize,
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let expected = || format!("expected K/N with 1 ≤ K ≤ N (e.g. 3/8), found `{text}`");
        let (k, n) = text.split_once('/').ok_or_else(expected)?;
        let index: usize = k.trim().parse().map_err(|_| expected())?;
        let count: usize = n.trim().parse().map_err(|_| expected())?;
        if index == 0 || index > count {
            return Err(expected());
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// This share of `items`, which are first sorted by `key`.
    pub fn select<T, K: Ord>(self, mut items: Vec<T>, key: impl Fn(&T) -> K) -> Vec<T> {
        items.sort_by_key(|item| key(item));
        items
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % self.count == self.index - 1)
            .map(|(_, item)| item)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_every_item_once() {
        let items: Vec<u32> = vec![9, 3, 7, 1, 5, 2, 8];
        let mut all = Vec::new();
        for k in 1..=3 {
            let shard: Shard = format!("{k}/3").parse().unwrap();
            let share = shard.select(items.clone(), |x| *x);
            assert!(share.windows(2).all(|w| w[0] < w[1]));
            all.extend(share);
        }
        all.sort();
        assert_eq!(all, vec![1, 2, 3, 5, 7, 8, 9]);
        assert_eq!("2/3".parse::<Shard>().unwrap().select(items, |x| *x), vec![2, 7]);
    }

    #[test]
    fn bad_shards_say_what_is_expected() {
        for text in ["0/3", "4/3", "3", "a/b", "1/0", ""] {
            let e = text.parse::<Shard>().unwrap_err();
            assert!(e.contains("expected K/N"), "{text}: {e}");
        }
    }
}
