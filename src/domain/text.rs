//! Text as it may be stored. PostgreSQL refuses NUL in a text column, and
//! SQLite's `length()` (behind the tables' length checks) stops counting at it,
//! so a NUL typed or pasted into a name or a message was a 500 on one backend
//! and a broken row on the other. Written text is cleaned rather than refused:
//! a stray control character pasted along is nobody's intent.

use std::borrow::Cow;

/// `text` without control characters: line breaks and tabs stay where
/// `multiline`; on one line every control character becomes a space.
/// Invisible characters that only disguise text go too: the bidirectional
/// embeddings and overrides (U+202A–U+202E: U+202E before "gnp.exe" makes it
/// read as "exe.png") and the zero-width space, word joiner and BOM (a name of them
/// alone looks empty). The marks and joiners that right-to-left scripts,
/// Persian and emoji need (U+200C–U+200F) stay.
pub fn clean(text: &str, multiline: bool) -> Cow<'_, str> {
    let kept = |c: char| multiline && matches!(c, '\n' | '\r' | '\t');
    if !text
        .chars()
        .any(|c| (c.is_control() && !kept(c)) || disguise(c))
    {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .filter_map(|c| match c {
                c if disguise(c) => None,
                c if !c.is_control() || kept(c) => Some(c),
                _ if multiline => None,
                _ => Some(' '),
            })
            .collect(),
    )
}

fn disguise(c: char) -> bool {
    matches!(
        c,
        '\u{202A}'..='\u{202E}' | '\u{200B}' | '\u{2060}' | '\u{FEFF}'
    )
}

/// `text` without the characters that only disguise it (see [`clean`]), for
/// fields that refuse control characters instead of cleaning them.
pub fn undisguised(text: &str) -> Cow<'_, str> {
    if text.chars().any(disguise) {
        Cow::Owned(text.chars().filter(|&c| !disguise(c)).collect())
    } else {
        Cow::Borrowed(text)
    }
}

/// `text` on one line (every run of spaces, line breaks and control
/// characters one space) and at most `max` characters, with "…" when cut.
pub fn one_line(text: &str, max: usize) -> String {
    let mut out = String::new();
    let mut count = 0;
    for word in text.split(|c: char| c.is_whitespace() || c.is_control()) {
        if word.is_empty() {
            continue;
        }
        for c in (!out.is_empty())
            .then_some(' ')
            .into_iter()
            .chain(word.chars())
        {
            if count == max {
                out.push('…');
                return out;
            }
            out.push(c);
            count += 1;
        }
    }
    out
}

/// A size as people read it: "10.0 MB", "512 KB".
pub fn human_bytes(bytes: u64) -> String {
    const KB: u64 = 1024;
    const MB: u64 = KB * 1024;
    const GB: u64 = MB * 1024;
    match bytes {
        b if b >= GB => format!("{:.1} GB", b as f64 / GB as f64),
        b if b >= MB => format!("{:.1} MB", b as f64 / MB as f64),
        b if b >= KB => format!("{:.0} KB", b as f64 / KB as f64),
        b => format!("{b} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::{clean, human_bytes, undisguised};

    #[test]
    fn bytes_read_like_a_person_writes_them() {
        assert_eq!(human_bytes(5 * 1024 * 1024), "5.0 MB");
        assert_eq!(human_bytes(2048), "2 KB");
        assert_eq!(human_bytes(12), "12 bytes");
    }

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

    #[test]
    fn characters_that_disguise_text_go() {
        assert_eq!(clean("\u{202e}gnp.exe", false), "gnp.exe");
        assert_eq!(clean("a\u{202a}b\u{202c}c", true), "abc");
        assert_eq!(clean("\u{200b}", false), "");
        assert_eq!(clean("\u{feff}Title\u{2060}", false), "Title");
        // Joiners make one emoji of several, and a word of Persian letters.
        let family = "👨\u{200d}👩\u{200d}👧";
        assert_eq!(clean(family, false), family);
        assert_eq!(clean("می\u{200c}خواهم", false), "می\u{200c}خواهم");
        assert_eq!(undisguised("\u{202e}a\u{0}b"), "a\u{0}b");
    }
}
