//! Text from outside (names, ids and uuids a server sends, error details) on its way to
//! a terminal or into a human-readable message: control characters and the Unicode
//! bidirectional controls are shown escaped (`\u{1b}`, `\n`, `\u{202e}`), so a key named
//! with an ESC sequence cannot repaint the screen, a CR/LF cannot forge an output line,
//! and U+202E cannot reverse what follows. JSON output is left exact: serde escapes what
//! JSON needs and scripts get the real values.

use std::borrow::Cow;
use std::fmt;

/// Characters shown escaped: C0 and C1 controls, DEL, and the invisible direction
/// marks and overrides (U+061C, U+200E/F, U+202A..E, U+2066..9).
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// `text` with every unsafe character escaped; borrowed when there is none.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c if is_unsafe(c) => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Our own multi-line text with outside text inside it: each line escaped, the line
/// breaks kept (a CR or any other control inside a line is still escaped).
pub fn escape_lines(text: &str) -> String {
    text.split('\n')
        .map(|line| escape(line).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Display wrapper that escapes, and honours width and alignment (`{:<36}`).
pub struct Shown<'a>(pub &'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&escape(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_are_escaped_plain_text_is_untouched() {
        assert!(matches!(escape("fra-1 Bob ü"), Cow::Borrowed(_)));
        assert_eq!(
            escape("a\u{1b}[2Jb\r\nFAKE\0\u{202e}x\u{7f}\u{9b}"),
            "a\\u{1b}[2Jb\\r\\nFAKE\\0\\u{202e}x\\u{7f}\\u{9b}"
        );
        assert_eq!(escape_lines("one\ntwo\rthree\n"), "one\ntwo\\rthree\n");
        assert_eq!(format!("[{:<6}]", Shown("a\nb")), "[a\\nb  ]");
    }
}
