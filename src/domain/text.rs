//! Text as it may be stored. PostgreSQL refuses NUL in a text column, and
//! SQLite's `length()` (behind the tables' length checks) stops counting at it,
//! so a NUL typed or pasted into a name or a message was a 500 on one backend
//! and a broken row on the other. Written text is cleaned rather than refused:
//! a stray control character pasted along is nobody's intent.

use std::borrow::Cow;

/// `text` without control characters: line breaks and tabs stay where
/// `multiline`; on one line every control character becomes a space.
pub fn clean(text: &str, multiline: bool) -> Cow<'_, str> {
    let kept = |c: char| multiline && matches!(c, '\n' | '\r' | '\t');
    if !text.chars().any(|c| c.is_control() && !kept(c)) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .filter_map(|c| match c {
                c if !c.is_control() || kept(c) => Some(c),
                _ if multiline => None,
                _ => Some(' '),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::clean;

    #[test]
    fn control_characters_go_line_breaks_stay_where_asked() {
        assert_eq!(clean("plain text", false), "plain text");
        assert!(matches!(
            clean("plain", true),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(clean("a\u{0}b", false), "a b");
        assert_eq!(clean("\u{0}", true), "");
        assert_eq!(clean("one\ntwo\tthree\u{7}\u{0}", true), "one\ntwo\tthree");
        assert_eq!(clean("one\ntwo", false), "one two");
        assert_eq!(
            clean("emoji 🚲 and RTL \u{200f}", false),
            "emoji 🚲 and RTL \u{200f}"
        );
    }
}
