//! The plugin's fixed output slots: one stereo auxiliary output per shipped stem, then spare slots
//! that user-trained (or any other) priors fill. Port layouts are fixed when the plugin is built,
//! so which prior feeds which slot is decided here and shown in the editor.

/// Number of auxiliary stem outputs (and of per-stem parameter strips).
pub const SLOT_COUNT: usize = 8;

/// The stems the shipped priors are named after, each with its own slot, in slot order.
pub const SHIPPED_STEMS: [&str; 4] = ["bass", "drums", "guitar", "piano"];

/// Port and strip names, slot by slot: the shipped stems, then the spare slots.
pub const SLOT_NAMES: [&str; SLOT_COUNT] = [
    "Bass", "Drums", "Guitar", "Piano", "Spare 1", "Spare 2", "Spare 3", "Spare 4",
];

/// Assigns each stem (in the separator's order) a slot: a shipped stem name gets its own slot,
/// every other stem the next free spare slot. Stems that find no slot get `None` and are left out
/// of the separation by the caller.
pub fn assign_slots<S: AsRef<str>>(stems: &[S]) -> Vec<Option<usize>> {
    let mut taken = [false; SLOT_COUNT];
    let mut slots: Vec<Option<usize>> = stems
        .iter()
        .map(|stem| {
            let slot = SHIPPED_STEMS.iter().position(|s| *s == stem.as_ref());
            if let Some(slot) = slot {
                taken[slot] = true;
            }
            slot
        })
        .collect();
    for slot in slots.iter_mut().filter(|s| s.is_none()) {
        if let Some(free) = (SHIPPED_STEMS.len()..SLOT_COUNT).find(|&i| !taken[i]) {
            taken[free] = true;
            *slot = Some(free);
        }
    }
    slots
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_stems_keep_their_slot_and_others_fill_spares() {
        assert_eq!(
            assign_slots(&["noise", "piano", "sine"]),
            vec![Some(4), Some(3), Some(5)]
        );
        let many: Vec<String> = (0..10).map(|i| format!("s{i}")).collect();
        let slots = assign_slots(&many);
        assert_eq!(slots[..4], [Some(4), Some(5), Some(6), Some(7)]);
        assert!(slots[4..].iter().all(Option::is_none));
    }
}
