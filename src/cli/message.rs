//! The command line's error and warning lines. Each is one line whatever it quotes: a control
//! character in a file name (a line break, a tab, an escape) is written escaped, so a script
//! reading stderr line by line sees one message per line and a terminal is never driven by a name.

use std::fmt::Display;

/// Prints `stemflow: error: <message>` on one line to stderr.
pub fn error(message: impl Display) {
    eprintln!("stemflow: error: {}", one_line(&message.to_string()));
}

/// Prints `stemflow: warning: <message>` on one line to stderr.
pub fn warning(message: impl Display) {
    eprintln!("stemflow: warning: {}", one_line(&message.to_string()));
}

/// `text` with every control character written as Rust writes it in a string literal (`\n`,
/// `\t`, `\u{1b}`); everything else, non-ASCII included, as it is.
pub fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(one_line("a\nb\rc\td\u{1b}[2Je"), "a\\nb\\rc\\td\\u{1b}[2Je");
        assert_eq!(one_line("Ünïcødé — 曲.wav"), "Ünïcødé — 曲.wav");
    }
}
