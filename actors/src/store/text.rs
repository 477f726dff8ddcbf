//! Text bound for a `text` column: a length cap and no control characters, so every value is
//! storable by SQLite and PostgreSQL alike (PostgreSQL refuses a NUL byte in `text`).

use std::borrow::Cow;

/// Longest model name a request may send (bytes of UTF-8).
pub const MAX_MODEL: usize = 256;
/// Longest request id, service, endpoint or other label stored with a usage event.
pub const MAX_LABEL: usize = 256;
/// Longest error text kept beside a dead-lettered usage event.
pub const MAX_ERROR: usize = 2048;

/// True when `text` fits in `max` bytes and holds no control character (NUL included).
pub fn is_clean(text: &str, max: usize) -> bool {
    if text.len() > max {
        return false;
    }
    // Every usage event checks six labels, nearly always ASCII: there a control character is
    // a byte below 0x20 or 0x7F, found without decoding (the fold has no early exit, so it
    // runs over whole words). Other text is checked a character at a time for C1 controls.
    if text.is_ascii() {
        return !text
            .bytes()
            .fold(false, |found, byte| found | (byte < 0x20) | (byte == 0x7f));
    }
    !text.chars().any(char::is_control)
}

/// `text` made storable: control characters replaced by U+FFFD, then cut to at most `max`
/// bytes on a character boundary. Borrowed (no allocation) when it already was.
pub fn bounded(text: &str, max: usize) -> Cow<'_, str> {
    if is_clean(text, max) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len().min(max));
    for c in text.chars() {
        let c = if c.is_control() {
            char::REPLACEMENT_CHARACTER
        } else {
            c
        };
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    Cow::Owned(out)
}

/// Makes `text` storable in place; allocates only when it was not.
pub fn bound_in_place(text: &mut String, max: usize) {
    if let Cow::Owned(clean) = bounded(text, max) {
        *text = clean;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_text_is_borrowed_and_dirty_text_is_made_storable() {
        assert!(matches!(bounded("llm/m", 16), Cow::Borrowed("llm/m")));
        assert_eq!(bounded("llm/\0x\n", 16), "llm/\u{FFFD}x\u{FFFD}");
        assert_eq!(bounded("\u{85}", 16), "\u{FFFD}", "C1 controls too");
        // Cut on a character boundary, never inside one.
        assert_eq!(bounded("aé", 2), "a");
        assert_eq!(bounded(&"x".repeat(300), MAX_LABEL).len(), MAX_LABEL);
        let mut text = String::from("a\0b");
        bound_in_place(&mut text, 8);
        assert_eq!(text, "a\u{FFFD}b");
        assert!(is_clean("llm/m", MAX_MODEL));
        assert!(!is_clean("llm/\0", MAX_MODEL));
        assert!(!is_clean(&"m".repeat(MAX_MODEL + 1), MAX_MODEL));
    }

    /// The ASCII shortcut agrees with `char::is_control` for every character around it.
    #[test]
    fn clean_means_no_control_character() {
        for c in (0..0x300).filter_map(char::from_u32) {
            for text in [format!("{c}"), format!("ab{c}"), format!("{c}é")] {
                assert_eq!(is_clean(&text, 16), !c.is_control(), "{text:?}");
            }
        }
    }
}
