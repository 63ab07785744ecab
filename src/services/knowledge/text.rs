//! Turns uploaded knowledge-base files into plain text and splits that text into
//! passages for full-text search.
//!
//! Everything here sees bytes a visitor or operator uploaded, so nothing may panic on
//! odd input: sizes are counted in chars and every slice is cut on a char boundary.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// The kinds of file the knowledge base can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFormat {
    Text,
    Markdown,
    Html,
    Pdf,
}

impl SourceFormat {
    /// Stored in the DB: "text" | "markdown" | "html" | "pdf"
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Markdown => "markdown",
            Self::Html => "html",
            Self::Pdf => "pdf",
        }
    }

    /// Inverse of [`SourceFormat::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "text" => Some(Self::Text),
            "markdown" => Some(Self::Markdown),
            "html" => Some(Self::Html),
            "pdf" => Some(Self::Pdf),
            _ => None,
        }
    }

    /// The extension wins over the Content-Type because browsers report whatever the
    /// OS guesses (often `application/octet-stream` for `.md`), while the name is what
    /// the person chose. The Content-Type only decides when the name says nothing we know.
    pub fn from_upload(
        filename: Option<&str>,
        content_type: Option<&str>,
    ) -> Result<Self, TextError> {
        let extension = filename.and_then(extension_of);
        if let Some(ext) = &extension {
            let by_ext = match ext.as_str() {
                "txt" | "text" => Some(Self::Text),
                "md" | "markdown" => Some(Self::Markdown),
                "html" | "htm" => Some(Self::Html),
                "pdf" => Some(Self::Pdf),
                _ => None,
            };
            if let Some(format) = by_ext {
                return Ok(format);
            }
        }

        let essence = content_type
            .and_then(|ct| ct.split(';').next())
            .map(|e| e.trim().to_ascii_lowercase())
            .filter(|e| !e.is_empty());
        if let Some(essence) = &essence {
            let by_type = match essence.as_str() {
                "text/plain" => Some(Self::Text),
                "text/markdown" | "text/x-markdown" => Some(Self::Markdown),
                "text/html" => Some(Self::Html),
                "application/pdf" => Some(Self::Pdf),
                _ => None,
            };
            if let Some(format) = by_type {
                return Ok(format);
            }
        }

        // Named in the message, so kept short: it echoes what the caller sent.
        let given = match (extension, essence) {
            (Some(ext), _) if ext.chars().count() <= 16 => format!(".{ext}"),
            (Some(_), _) => "an unknown extension".to_owned(),
            (None, Some(essence)) if essence.len() <= 80 => essence,
            (None, Some(_)) => "an unknown content type".to_owned(),
            (None, None) if filename.is_some() => "a file name without an extension".to_owned(),
            (None, None) => "no file name or type given".to_owned(),
        };
        Err(TextError::Unsupported { given })
    }
}

/// Shown in 415 errors.
pub const ACCEPTED: &[&str] = &[".txt", ".md", ".html", ".pdf"];

/// Why an upload could not be turned into text. The messages are shown to the person
/// who uploaded the file, so they say what to do and leak nothing about internals.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TextError {
    #[error("Unsupported file type ({given}). Accepted: .txt, .md, .html, .pdf.")]
    Unsupported { given: String },
    #[error("The file is empty or contains no readable text.")]
    Empty,
    #[error(
        "The file looks like binary data rather than text; please upload a text, Markdown, HTML or PDF file."
    )]
    Binary,
    #[error(
        "The file's contents don't match its type (they look like {looks_like}); please check the file and upload it again."
    )]
    Mislabelled { looks_like: &'static str },
    #[error("The PDF could not be read: {0}.")]
    Pdf(String),
}

/// Extracts plain text from an upload.
///
/// Markdown is kept as written, so `chunk` sees its headings. HTML loses scripts,
/// styles, `<head>`, `<noscript>`, `<template>` and comments; headings become `#` lines
/// and block elements line or paragraph breaks; entities are decoded into text, never
/// back into markup. PDF pages are separated by a blank line. Every format is then
/// normalised: LF line ends, no BOM, no trailing spaces, at most one blank line in a row.
pub fn extract(format: SourceFormat, bytes: &[u8]) -> Result<String, TextError> {
    if bytes.is_empty() {
        return Err(TextError::Empty);
    }
    let raw = match format {
        SourceFormat::Text | SourceFormat::Markdown => decode_text(bytes)?,
        SourceFormat::Html => html_to_text(&decode_text(bytes)?),
        SourceFormat::Pdf => pdf_to_text(bytes)?,
    };
    let text = normalise(&raw);
    if text.trim().is_empty() {
        return Err(TextError::Empty);
    }
    Ok(text)
}

// ---------------------------------------------------------------------------------
// Format detection
// ---------------------------------------------------------------------------------

/// The name without any folders: browsers on Windows have been known to send
/// the full client path, and an API caller may send anything.
fn base_name(filename: &str) -> &str {
    filename.rsplit(['/', '\\']).next().unwrap_or(filename)
}

fn extension_of(filename: &str) -> Option<String> {
    let (_, ext) = base_name(filename).rsplit_once('.')?;
    let ext = ext.trim();
    (!ext.is_empty()).then(|| ext.to_ascii_lowercase())
}

/// A document's title from the uploaded file's name: `guides/Returns.md` is
/// "Returns", cut to [`super::MAX_TITLE_CHARS`]; `None` when nothing is left.
pub fn title_from_filename(filename: &str) -> Option<String> {
    let base = base_name(filename);
    let stem = base.rsplit_once('.').map_or(base, |(stem, _)| stem).trim();
    (!stem.is_empty()).then(|| stem.chars().take(super::MAX_TITLE_CHARS).collect())
}

/// Formats we refuse to read as text but can name, so the error tells the person what
/// they actually uploaded.
fn sniff_magic(bytes: &[u8]) -> Option<&'static str> {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let head = &bytes[start..];
    if head.starts_with(b"%PDF-") {
        return Some("a PDF");
    }
    const MAGIC: &[(&[u8], &str)] = &[
        (b"\x89PNG\r\n\x1a\n", "a PNG image"),
        (b"\xFF\xD8\xFF", "a JPEG image"),
        (b"GIF87a", "a GIF image"),
        (b"GIF89a", "a GIF image"),
        (b"PK\x03\x04", "a ZIP archive or Office document"),
        (b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1", "an Office document"),
        (b"\x1F\x8B", "a gzip archive"),
        (b"{\\rtf", "an RTF document"),
    ];
    MAGIC
        .iter()
        .find(|(magic, _)| bytes.starts_with(magic))
        .map(|(_, name)| *name)
}

fn looks_like_pdf(bytes: &[u8]) -> bool {
    // The spec lets the header sit anywhere in the first 1024 bytes, and some writers
    // do put junk before it.
    let head = &bytes[..bytes.len().min(1024)];
    head.windows(5).any(|w| w == b"%PDF-")
}

// ---------------------------------------------------------------------------------
// Text decoding
// ---------------------------------------------------------------------------------

fn decode_text(bytes: &[u8]) -> Result<String, TextError> {
    if let Some(looks_like) = sniff_magic(bytes) {
        return Err(TextError::Mislabelled { looks_like });
    }
    let text = if let Some(text) = decode_utf16_with_bom(bytes) {
        text
    } else {
        if bytes.contains(&0) {
            return Err(TextError::Binary);
        }
        match std::str::from_utf8(bytes) {
            Ok(s) => s.to_owned(),
            Err(_) => decode_non_utf8(bytes)?,
        }
    };
    if too_many_controls(&text) {
        return Err(TextError::Binary);
    }
    Ok(text)
}

/// Windows Notepad's "Unicode" is UTF-16 with a BOM; without this such files would be
/// rejected as binary because of their NUL bytes.
fn decode_utf16_with_bom(bytes: &[u8]) -> Option<String> {
    let little = match bytes {
        [0xFF, 0xFE, ..] => true,
        [0xFE, 0xFF, ..] => false,
        _ => return None,
    };
    let units = bytes[2..].chunks_exact(2).map(|pair| {
        let pair = [pair[0], pair[1]];
        if little {
            u16::from_le_bytes(pair)
        } else {
            u16::from_be_bytes(pair)
        }
    });
    Some(
        char::decode_utf16(units)
            .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect(),
    )
}

/// A few stray bad bytes in otherwise UTF-8 text are corruption worth tolerating; text
/// whose every non-ASCII byte is invalid is almost certainly Windows-1252, which is
/// what older Windows editors save.
fn decode_non_utf8(bytes: &[u8]) -> Result<String, TextError> {
    let mut invalid = 0usize;
    let mut valid_multibyte = false;
    for chunk in bytes.utf8_chunks() {
        invalid += chunk.invalid().len();
        valid_multibyte |= !chunk.valid().is_ascii();
    }
    if invalid * 10 > bytes.len() * 3 {
        return Err(TextError::Binary);
    }
    if valid_multibyte {
        return Ok(String::from_utf8_lossy(bytes).into_owned());
    }
    Ok(bytes.iter().map(|&b| windows_1252(b)).collect())
}

fn windows_1252(b: u8) -> char {
    const HIGH: [char; 32] = [
        '€', '\u{FFFD}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{FFFD}', 'Ž',
        '\u{FFFD}', '\u{FFFD}', '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ',
        '\u{FFFD}', 'ž', 'Ÿ',
    ];
    match b {
        0x80..=0x9F => HIGH[usize::from(b - 0x80)],
        _ => char::from(b),
    }
}

fn is_stray_control(c: char) -> bool {
    c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\x0C')
}

/// One stray escape code in a long document is tolerable; text that is more than 1%
/// control characters is not text.
fn too_many_controls(text: &str) -> bool {
    let mut total = 0usize;
    let mut controls = 0usize;
    for c in text.chars() {
        total += 1;
        controls += usize::from(is_stray_control(c));
    }
    controls > 0 && controls * 100 > total
}

/// CRLF/CR → LF, form feed → paragraph break, drop BOM and control chars, trim line ends,
/// and allow at most one blank line in a row (runs of more collapse to one).
fn normalise(raw: &str) -> String {
    let raw = raw.strip_prefix('\u{FEFF}').unwrap_or(raw);
    let unified = raw.replace("\r\n", "\n").replace(['\r', '\x0C'], "\n");
    let mut out = String::with_capacity(unified.len());
    let mut blank_pending = false;
    for line in unified.split('\n') {
        let needs_cleaning =
            line.contains(|c| is_stray_control(c) || c == '\u{FEFF}' || ligature(c).is_some());
        let cleaned: std::borrow::Cow<'_, str> = if needs_cleaning {
            let mut clean = String::with_capacity(line.len());
            for c in line
                .chars()
                .filter(|c| !is_stray_control(*c) && *c != '\u{FEFF}')
            {
                match ligature(c) {
                    Some(letters) => clean.push_str(letters),
                    None => clean.push(c),
                }
            }
            clean.into()
        } else {
            line.into()
        };
        let cleaned = cleaned.trim_end();
        if cleaned.is_empty() {
            blank_pending = !out.is_empty();
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank_pending { "\n\n" } else { "\n" });
        }
        out.push_str(cleaned);
        blank_pending = false;
    }
    out
}

/// PDFs typeset with ligatures yield "ﬁle" for "file", which no visitor will type.
fn ligature(c: char) -> Option<&'static str> {
    Some(match c {
        '\u{FB00}' => "ff",
        '\u{FB01}' => "fi",
        '\u{FB02}' => "fl",
        '\u{FB03}' => "ffi",
        '\u{FB04}' => "ffl",
        '\u{FB05}' | '\u{FB06}' => "st",
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------
// HTML
// ---------------------------------------------------------------------------------

/// Elements whose whole subtree is dropped. `script` and `style` are additionally raw
/// text, handled separately, because their bodies may contain `<` that is not a tag.
const DROPPED: &[&str] = &["head", "noscript", "template", "script", "style"];

/// Elements that may appear inside `<head>` without ending it.
const HEAD_ONLY: &[&str] = &["title", "meta", "link", "base", "basefont", "bgsound"];

const PARAGRAPH_BLOCKS: &[&str] = &[
    "p",
    "section",
    "article",
    "blockquote",
    "pre",
    "table",
    "ul",
    "ol",
    "dl",
    "header",
    "footer",
    "main",
    "nav",
    "aside",
    "figure",
    "hr",
    "form",
    "fieldset",
    "details",
    "address",
    "body",
    "html",
];

const LINE_BLOCKS: &[&str] = &[
    "div",
    "li",
    "br",
    "tr",
    "dt",
    "dd",
    "summary",
    "figcaption",
    "caption",
    "option",
    "legend",
];

/// Builds text from HTML text nodes, deferring breaks and spaces until the next visible
/// text so that nested blocks don't pile up blank lines or trailing spaces.
struct HtmlOut {
    text: String,
    pending_breaks: usize,
    pending_space: bool,
}

impl HtmlOut {
    fn block_break(&mut self, newlines: usize) {
        self.pending_breaks = self.pending_breaks.max(newlines);
        self.pending_space = false;
    }

    fn space(&mut self) {
        self.pending_space = true;
    }

    fn push_str(&mut self, s: &str, preformatted: bool) {
        for c in s.chars() {
            if !preformatted && c.is_whitespace() && c != '\u{A0}' {
                self.pending_space = true;
                continue;
            }
            self.push_visible(if c == '\u{A0}' { ' ' } else { c });
        }
    }

    fn push_visible(&mut self, c: char) {
        if self.pending_breaks > 0 {
            if !self.text.is_empty() {
                for _ in 0..self.pending_breaks {
                    self.text.push('\n');
                }
            }
            self.pending_breaks = 0;
            self.pending_space = false;
        } else if self.pending_space {
            if !self.text.is_empty() && !self.text.ends_with(['\n', ' ']) {
                self.text.push(' ');
            }
            self.pending_space = false;
        }
        self.text.push(c);
    }
}

fn html_to_text(html: &str) -> String {
    let bytes = html.as_bytes();
    let mut out = HtmlOut {
        text: String::with_capacity(html.len() / 2),
        pending_breaks: 0,
        pending_space: false,
    };
    // Nesting depth per dropped element, so `<template>` inside `<template>` and an
    // unclosed `<head>` behave sensibly.
    let mut dropped: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut pre_depth = 0usize;
    let mut heading_depth = 0usize;
    let mut pos = 0usize;

    while pos < bytes.len() {
        let Some(lt) = memchr(b'<', &bytes[pos..]).map(|i| pos + i) else {
            emit_text(&mut out, &html[pos..], &dropped, pre_depth);
            break;
        };
        if lt > pos {
            emit_text(&mut out, &html[pos..lt], &dropped, pre_depth);
        }
        let rest = &bytes[lt + 1..];

        if rest.starts_with(b"!--") {
            pos = find(bytes, b"-->", lt + 4).map_or(bytes.len(), |i| i + 3);
            continue;
        }
        if rest.starts_with(b"![CDATA[") {
            let body_start = lt + 9;
            let end = find(bytes, b"]]>", body_start).unwrap_or(bytes.len());
            emit_text(&mut out, &html[body_start..end], &dropped, pre_depth);
            pos = (end + 3).min(bytes.len());
            continue;
        }
        if rest.starts_with(b"!") || rest.starts_with(b"?") {
            pos = memchr(b'>', rest).map_or(bytes.len(), |i| lt + 1 + i + 1);
            continue;
        }

        let closing = rest.first() == Some(&b'/');
        let name_start = lt + 1 + usize::from(closing);
        let name_len = bytes[name_start..]
            .iter()
            .position(|b| !(b.is_ascii_alphanumeric() || *b == b'-' || *b == b':'))
            .unwrap_or(bytes.len() - name_start);
        if name_len == 0 || !bytes[name_start].is_ascii_alphabetic() {
            // Not a tag: a bare `<` in text, as in "a < b".
            emit_text(&mut out, "<", &dropped, pre_depth);
            pos = lt + 1;
            continue;
        }
        let name = html[name_start..name_start + name_len].to_ascii_lowercase();
        // `/>` closes nothing on these (none is a void element): browsers read
        // `<script/>` as the start of a script, and so does this.
        let (tag_end, _self_closing) = skip_attributes(bytes, name_start + name_len);
        pos = tag_end;

        if !closing && (name == "script" || name == "style") {
            let close = format!("</{name}");
            pos = find_ascii_ci(bytes, close.as_bytes(), pos)
                .map_or(bytes.len(), |i| skip_attributes(bytes, i + close.len()).0);
            continue;
        }
        if let Some(&drop_name) = DROPPED.iter().find(|d| **d == name) {
            let depth = dropped.entry(drop_name).or_insert(0);
            if closing {
                *depth = depth.saturating_sub(1);
            } else {
                *depth += 1;
            }
            continue;
        }
        if !HEAD_ONLY.contains(&name.as_str()) {
            // Browsers end an unclosed <head> at the first element that cannot live in
            // it; without this a missing </head> would swallow the whole page.
            dropped.remove("head");
        }

        let visible = dropped.values().all(|d| *d == 0);
        if let Some(level) = heading_level(&name) {
            out.block_break(2);
            if closing {
                heading_depth = heading_depth.saturating_sub(1);
            } else {
                heading_depth += 1;
                if visible {
                    for _ in 0..level {
                        out.push_visible('#');
                    }
                    out.space();
                }
            }
            continue;
        }
        if name == "pre" {
            pre_depth = if closing {
                pre_depth.saturating_sub(1)
            } else {
                pre_depth + 1
            };
        }
        if heading_depth > 0 && (name == "br" || LINE_BLOCKS.contains(&name.as_str())) {
            // A heading must stay on one line or chunk() would lose the rest of it.
            out.space();
        } else if PARAGRAPH_BLOCKS.contains(&name.as_str()) {
            out.block_break(2);
        } else if LINE_BLOCKS.contains(&name.as_str()) {
            out.block_break(1);
            if name == "li" && !closing && visible {
                out.push_visible('-');
                out.space();
            }
        } else if name == "td" || name == "th" {
            out.space();
        }
    }
    out.text
}

fn emit_text(
    out: &mut HtmlOut,
    text: &str,
    dropped: &BTreeMap<&'static str, usize>,
    pre_depth: usize,
) {
    if dropped.values().any(|d| *d > 0) {
        return;
    }
    let preformatted = pre_depth > 0;
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp], preformatted);
        let (decoded, used) = decode_entity(&rest[amp..]);
        match decoded {
            Some(c) if c.is_whitespace() && c != '\u{A0}' && !preformatted => out.space(),
            // A soft hyphen is invisible; keeping it would split the word for search.
            Some('\u{AD}') => {}
            Some(c) => out.push_str(c.encode_utf8(&mut [0; 4]), true),
            None => out.push_visible('&'),
        }
        rest = &rest[amp + used..];
    }
    out.push_str(rest, preformatted);
}

/// Decodes the entity at the start of `s` (which begins with `&`). Returns the char and
/// how many bytes it used; an unknown entity yields `None` and 1, keeping the `&`.
fn decode_entity(s: &str) -> (Option<char>, usize) {
    let body = &s[1..];
    if let Some(num) = body.strip_prefix('#') {
        let (digits, radix, prefix) = match num.strip_prefix(['x', 'X']) {
            Some(hex) => (hex, 16, 2),
            None => (num, 10, 1),
        };
        let len = digits
            .bytes()
            .take_while(|b| (*b as char).is_digit(radix))
            .count();
        if len == 0 {
            return (None, 1);
        }
        let value = u32::from_str_radix(&digits[..len.min(8)], radix).unwrap_or(u32::MAX);
        let c = match char::from_u32(value) {
            Some('\0') | None => char::REPLACEMENT_CHARACTER,
            // Browsers map these C1 code points to Windows-1252, and old pages rely on it.
            Some(c @ '\u{80}'..='\u{9F}') => windows_1252(c as u8),
            Some(c) => c,
        };
        let semicolon = usize::from(digits[len..].starts_with(';'));
        return (Some(c), 1 + prefix + len + semicolon);
    }
    let name_len = body.bytes().take_while(u8::is_ascii_alphanumeric).count();
    if name_len == 0 || !body[name_len..].starts_with(';') {
        return (None, 1);
    }
    let c = match &body[..name_len] {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => '\u{A0}',
        "shy" => '\u{AD}',
        "zwj" => '\u{200D}',
        "zwnj" => '\u{200C}',
        "ensp" | "emsp" | "thinsp" => ' ',
        "copy" => '©',
        "reg" => '®',
        "trade" => '™',
        "hellip" => '…',
        "mdash" => '—',
        "ndash" => '–',
        "minus" => '−',
        "lsquo" => '‘',
        "rsquo" => '’',
        "sbquo" => '‚',
        "ldquo" => '“',
        "rdquo" => '”',
        "bdquo" => '„',
        "laquo" => '«',
        "raquo" => '»',
        "bull" => '•',
        "middot" => '·',
        "deg" => '°',
        "times" => '×',
        "divide" => '÷',
        "euro" => '€',
        "pound" => '£',
        "yen" => '¥',
        "cent" => '¢',
        "sect" => '§',
        "para" => '¶',
        "plusmn" => '±',
        "frac12" => '½',
        "frac14" => '¼',
        "frac34" => '¾',
        "rarr" => '→',
        "larr" => '←',
        "check" => '✓',
        "szlig" => 'ß',
        "AElig" => 'Æ',
        "aelig" => 'æ',
        "OElig" => 'Œ',
        "oelig" => 'œ',
        "Oslash" => 'Ø',
        "oslash" => 'ø',
        "ETH" => 'Ð',
        "eth" => 'ð',
        "THORN" => 'Þ',
        "thorn" => 'þ',
        "Lstrok" => 'Ł',
        "lstrok" => 'ł',
        "iexcl" => '¡',
        "iquest" => '¿',
        "ordf" => 'ª',
        "ordm" => 'º',
        "micro" => 'µ',
        "sup2" => '²',
        "sup3" => '³',
        "dagger" => '†',
        "permil" => '‰',
        name => match accented(name) {
            Some(c) => c,
            None => return (None, 1),
        },
    };
    (Some(c), name_len + 2)
}

/// A letter with a diacritic, named as HTML names them: the letter, then the
/// mark (`eacute`, `Uuml`, `ccedil`, `scaron`, `odblac`), which covers the
/// accented letters of the Latin scripts without a table of each.
fn accented(name: &str) -> Option<char> {
    let mut chars = name.chars();
    let base = chars.next().filter(char::is_ascii_alphabetic)?;
    let mark = match chars.as_str() {
        "grave" => '\u{300}',
        "acute" => '\u{301}',
        "circ" => '\u{302}',
        "tilde" => '\u{303}',
        "macr" => '\u{304}',
        "breve" => '\u{306}',
        "dot" => '\u{307}',
        "uml" => '\u{308}',
        "ring" => '\u{30A}',
        "dblac" => '\u{30B}',
        "caron" => '\u{30C}',
        "cedil" => '\u{327}',
        "ogon" => '\u{328}',
        _ => return None,
    };
    unicode_normalization::char::compose(base, mark)
}

fn heading_level(name: &str) -> Option<usize> {
    match name.as_bytes() {
        [b'h', d @ b'1'..=b'6'] => Some(usize::from(d - b'0')),
        _ => None,
    }
}

/// Skips a tag's attributes, honouring quotes so that `>` inside a value does not end
/// the tag. Returns the index after `>` and whether the tag was self-closing.
fn skip_attributes(bytes: &[u8], mut i: usize) -> (usize, bool) {
    let mut quote: Option<u8> = None;
    let mut last_significant = 0u8;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'"' || b == b'\'' => quote = Some(b),
            None if b == b'>' => return (i + 1, last_significant == b'/'),
            None => {}
        }
        if !b.is_ascii_whitespace() {
            last_significant = b;
        }
        i += 1;
    }
    (bytes.len(), false)
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|b| *b == needle)
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| from + i)
}

fn find_ascii_ci(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
        .map(|i| from + i)
}

// ---------------------------------------------------------------------------------
// PDF
// ---------------------------------------------------------------------------------

/// Per-stream bound on decompressed size, so a small crafted file cannot inflate to
/// gigabytes while we read it.
const PDF_MAX_DECOMPRESSED: usize = 64 * 1024 * 1024;

/// Text a PDF may yield per byte of file (text compresses well, but not this
/// well), between a floor for small files and a ceiling for all.
const PDF_TEXT_PER_BYTE: usize = 20;
const PDF_MIN_TEXT_BUDGET: usize = 1024 * 1024;
const PDF_MAX_TEXT: usize = 64 * 1024 * 1024;
const PDF_MAX_PAGES: usize = 10_000;
/// Reading runs on a blocking thread: a file that takes longer is refused.
const PDF_MAX_READ: std::time::Duration = std::time::Duration::from_secs(30);

fn pdf_to_text(bytes: &[u8]) -> Result<String, TextError> {
    if !looks_like_pdf(bytes) {
        let looks_like = sniff_magic(bytes).unwrap_or_else(|| match decode_text(bytes) {
            Ok(_) => "plain text",
            Err(_) => "some other binary format",
        });
        return Err(TextError::Mislabelled { looks_like });
    }
    // lopdf has a history of panicking on malformed files. This only helps with
    // panic=unwind; under panic=abort a panic here still ends the process.
    match catch_unwind(AssertUnwindSafe(|| read_pdf(bytes))) {
        Ok(result) => result,
        Err(_) => Err(TextError::Pdf(
            "the file is damaged or uses features we can't read".to_owned(),
        )),
    }
}

fn read_pdf(bytes: &[u8]) -> Result<String, TextError> {
    let options = lopdf::LoadOptions {
        max_decompressed_size: Some(PDF_MAX_DECOMPRESSED),
        ..Default::default()
    };
    let mut doc = lopdf::Document::load_mem_with_options(bytes, options).map_err(pdf_error)?;
    if doc.is_encrypted() {
        // Many "protected" PDFs only restrict printing and open with an empty password.
        doc.decrypt("")
            .map_err(|_| TextError::Pdf("it is password-protected".to_owned()))?;
    }

    let page_ids = doc.get_pages();
    if page_ids.len() > PDF_MAX_PAGES {
        return Err(TextError::Pdf(format!(
            "it has more than {PDF_MAX_PAGES} pages"
        )));
    }
    // Pages may share one content stream: a small file whose thousand pages
    // all show the same huge stream would yield gigabytes, page by page.
    let max_text = bytes
        .len()
        .saturating_mul(PDF_TEXT_PER_BYTE)
        .clamp(PDF_MIN_TEXT_BUDGET, PDF_MAX_TEXT);
    let deadline = std::time::Instant::now() + PDF_MAX_READ;
    let mut pages = Vec::new();
    let mut total = 0usize;
    let mut failed = false;
    for page_id in page_ids.into_values() {
        if std::time::Instant::now() > deadline {
            return Err(TextError::Pdf(
                "it took too long to read; try saving it as text".to_owned(),
            ));
        }
        match page_text(&doc, page_id) {
            Ok(text) if !text.trim().is_empty() => {
                total += text.len();
                if total > max_text {
                    return Err(TextError::Pdf(
                        "it holds far more text than a file of its size can; it may be crafted to do so".to_owned(),
                    ));
                }
                pages.push(text);
            }
            Ok(_) => {}
            Err(_) => failed = true,
        }
    }
    if pages.is_empty() && failed {
        return Err(TextError::Pdf(
            "the file is damaged or uses features we can't read".to_owned(),
        ));
    }
    Ok(pages.join("\n\n"))
}

fn pdf_error(err: lopdf::Error) -> TextError {
    let reason = match err {
        lopdf::Error::InvalidPassword | lopdf::Error::Decryption(_) => "it is password-protected",
        lopdf::Error::Decompress(_) => "it contains data that is too large or corrupt",
        _ => "the file is damaged or not a PDF we can read",
    };
    TextError::Pdf(reason.to_owned())
}

/// A 2-D affine transform [a b c d e f], applied to row vectors as PDF does.
#[derive(Clone, Copy)]
struct Matrix([f32; 6]);

impl Matrix {
    const IDENTITY: Self = Self([1.0, 0.0, 0.0, 1.0, 0.0, 0.0]);

    fn then(self, other: Self) -> Self {
        let [a, b, c, d, e, f] = self.0;
        let [oa, ob, oc, od, oe, of] = other.0;
        Self([
            a * oa + b * oc,
            a * ob + b * od,
            c * oa + d * oc,
            c * ob + d * od,
            e * oa + f * oc + oe,
            e * ob + f * od + of,
        ])
    }

    fn translate(tx: f32, ty: f32) -> Self {
        Self([1.0, 0.0, 0.0, 1.0, tx, ty])
    }

    fn origin(self) -> (f32, f32) {
        (self.0[4], self.0[5])
    }

    fn vertical_scale(self) -> f32 {
        self.0[2].hypot(self.0[3])
    }
}

/// How wide each glyph of a font is, in thousandths of an em. Needed to know where a
/// run of text ends, because some writers (Chrome's, for one) split words into several
/// runs to kern them, and only the gap between runs tells a kern from a word space.
enum Widths {
    Simple {
        first: i64,
        widths: Vec<f32>,
        missing: f32,
    },
    /// Sorted, non-overlapping (first CID, last CID, width) ranges of a CID font.
    Cid {
        ranges: Vec<(u32, u32, f32)>,
        default: f32,
    },
}

impl Widths {
    fn of(&self, code: u32) -> f32 {
        match self {
            Self::Simple {
                first,
                widths,
                missing,
            } => usize::try_from(i64::from(code) - first)
                .ok()
                .and_then(|i| widths.get(i).copied())
                .unwrap_or(*missing),
            Self::Cid { ranges, default } => {
                let i = ranges.partition_point(|(start, _, _)| *start <= code);
                i.checked_sub(1)
                    .and_then(|i| ranges.get(i))
                    .filter(|(_, end, _)| code <= *end)
                    .map_or(*default, |(_, _, w)| *w)
            }
        }
    }
}

struct Font<'a> {
    encoding: Option<lopdf::Encoding<'a>>,
    widths: Option<Widths>,
    /// Type0 fonts use two-byte codes (true of Identity-H and nearly every CMap in use).
    two_byte: bool,
}

fn load_font<'a>(doc: &'a lopdf::Document, font: &'a lopdf::Dictionary) -> Font<'a> {
    let encoding = font
        .get_font_encoding_with_limit(doc, PDF_MAX_DECOMPRESSED)
        .ok();
    let two_byte = font
        .get(b"Subtype")
        .and_then(lopdf::Object::as_name)
        .is_ok_and(|s| s == b"Type0");
    let widths = if two_byte {
        cid_widths(doc, font)
    } else {
        simple_widths(doc, font)
    };
    Font {
        encoding,
        widths,
        two_byte,
    }
}

fn deref<'a>(doc: &'a lopdf::Document, object: &'a lopdf::Object) -> &'a lopdf::Object {
    doc.dereference(object).map_or(object, |(_, o)| o)
}

fn simple_widths(doc: &lopdf::Document, font: &lopdf::Dictionary) -> Option<Widths> {
    let widths = font.get_deref(b"Widths", doc).ok()?.as_array().ok()?;
    let first = font.get_deref(b"FirstChar", doc).ok()?.as_i64().ok()?;
    let missing = font
        .get_deref(b"FontDescriptor", doc)
        .and_then(lopdf::Object::as_dict)
        .and_then(|d| d.get_deref(b"MissingWidth", doc))
        .and_then(lopdf::Object::as_float)
        .ok()
        .filter(|w| *w > 0.0)
        .unwrap_or(500.0);
    let widths = widths
        .iter()
        .map(|w| deref(doc, w).as_float().unwrap_or(missing))
        .collect();
    Some(Widths::Simple {
        first,
        widths,
        missing,
    })
}

fn cid_widths(doc: &lopdf::Document, font: &lopdf::Dictionary) -> Option<Widths> {
    let descendant = font
        .get_deref(b"DescendantFonts", doc)
        .ok()?
        .as_array()
        .ok()?
        .first()?;
    let descendant = deref(doc, descendant).as_dict().ok()?;
    let default = descendant
        .get_deref(b"DW", doc)
        .and_then(lopdf::Object::as_float)
        .unwrap_or(1000.0);
    let mut ranges = Vec::new();
    if let Ok(w) = descendant
        .get_deref(b"W", doc)
        .and_then(lopdf::Object::as_array)
    {
        let items: Vec<&lopdf::Object> = w.iter().map(|o| deref(doc, o)).collect();
        let mut i = 0;
        while i < items.len() {
            let cid = |o: &lopdf::Object| o.as_i64().ok().and_then(|v| u32::try_from(v).ok());
            let Some(first) = cid(items[i]) else { break };
            match (items.get(i + 1), items.get(i + 2)) {
                (Some(lopdf::Object::Array(list)), _) => {
                    for (offset, w) in list.iter().enumerate() {
                        let code = first.saturating_add(u32::try_from(offset).unwrap_or(u32::MAX));
                        ranges.push((code, code, deref(doc, w).as_float().unwrap_or(default)));
                    }
                    i += 2;
                }
                (Some(last), Some(width)) => {
                    let Some(last) = cid(last) else { break };
                    ranges.push((first, last, width.as_float().unwrap_or(default)));
                    i += 3;
                }
                _ => break,
            }
        }
    }
    ranges.sort_by_key(|(start, _, _)| *start);
    Some(Widths::Cid { ranges, default })
}

/// Text state for one page. lopdf's own `extract_text` ignores text positioning, so
/// words on consecutive lines run together ("receipt.The"); tracking where each run
/// starts and ends lets us put spaces, line and paragraph breaks back.
struct PageText<'a> {
    out: String,
    fonts: BTreeMap<Vec<u8>, Font<'a>>,
    font: Option<Vec<u8>>,
    font_size: f32,
    char_spacing: f32,
    word_spacing: f32,
    horizontal_scale: f32,
    leading: f32,
    ctm: Matrix,
    ctm_stack: Vec<Matrix>,
    line_matrix: Matrix,
    text_matrix: Matrix,
    last: Option<LastRun>,
    /// Typical distance between lines seen so far, to tell wrapped lines from paragraphs.
    line_gap: Option<f32>,
}

/// Where the last shown run started and ended, in user space, and its font height.
#[derive(Clone, Copy)]
struct LastRun {
    x: f32,
    y: f32,
    end_x: Option<f32>,
    height: f32,
}

fn page_text(doc: &lopdf::Document, page_id: lopdf::ObjectId) -> Result<String, lopdf::Error> {
    let fonts = doc
        .get_page_fonts(page_id)?
        .into_iter()
        .map(|(name, font)| (name, load_font(doc, font)))
        .collect();
    let content = doc.get_page_content_with_limit(page_id, PDF_MAX_DECOMPRESSED)?;
    let mut page = PageText {
        out: String::new(),
        fonts,
        font: None,
        font_size: 12.0,
        char_spacing: 0.0,
        word_spacing: 0.0,
        horizontal_scale: 1.0,
        leading: 0.0,
        ctm: Matrix::IDENTITY,
        ctm_stack: Vec::new(),
        line_matrix: Matrix::IDENTITY,
        text_matrix: Matrix::IDENTITY,
        last: None,
        line_gap: None,
    };
    // A content stream that breaks halfway still has readable text before the break.
    for op in lopdf::content::Content::decode_iter(&content) {
        let Ok(op) = op else { break };
        page.apply(&op.operator, &op.operands);
    }
    Ok(page.out)
}

fn num(operands: &[lopdf::Object], i: usize) -> f32 {
    operands
        .get(i)
        .and_then(|o| o.as_float().ok())
        .filter(|v| v.is_finite())
        .unwrap_or(0.0)
}

fn matrix_from(operands: &[lopdf::Object]) -> Option<Matrix> {
    if operands.len() < 6 {
        return None;
    }
    Some(Matrix([0, 1, 2, 3, 4, 5].map(|i| num(operands, i))))
}

impl PageText<'_> {
    fn apply(&mut self, operator: &str, operands: &[lopdf::Object]) {
        match operator {
            "q" if self.ctm_stack.len() < 64 => self.ctm_stack.push(self.ctm),
            "Q" => self.ctm = self.ctm_stack.pop().unwrap_or(Matrix::IDENTITY),
            "cm" => {
                if let Some(m) = matrix_from(operands) {
                    self.ctm = m.then(self.ctm);
                }
            }
            "BT" => {
                self.line_matrix = Matrix::IDENTITY;
                self.text_matrix = Matrix::IDENTITY;
            }
            "Tf" => {
                self.font = operands
                    .first()
                    .and_then(|o| o.as_name().ok())
                    .map(<[u8]>::to_vec);
                self.font_size = num(operands, 1).abs();
            }
            "Tc" => self.char_spacing = num(operands, 0),
            "Tw" => self.word_spacing = num(operands, 0),
            "Tz" => self.horizontal_scale = num(operands, 0) / 100.0,
            "TL" => self.leading = num(operands, 0),
            "Td" => self.move_line(num(operands, 0), num(operands, 1)),
            "TD" => {
                self.leading = -num(operands, 1);
                self.move_line(num(operands, 0), num(operands, 1));
            }
            "T*" => self.move_line(0.0, -self.leading),
            "Tm" => {
                if let Some(m) = matrix_from(operands) {
                    self.line_matrix = m;
                    self.text_matrix = m;
                }
            }
            "Tj" | "TJ" => self.show(operands),
            "'" => {
                self.move_line(0.0, -self.leading);
                self.show(operands);
            }
            "\"" => {
                self.word_spacing = num(operands, 0);
                self.char_spacing = num(operands, 1);
                self.move_line(0.0, -self.leading);
                self.show(operands.get(2..).unwrap_or_default());
            }
            _ => {}
        }
    }

    fn move_line(&mut self, tx: f32, ty: f32) {
        self.line_matrix = Matrix::translate(tx, ty).then(self.line_matrix);
        self.text_matrix = self.line_matrix;
    }

    fn show(&mut self, operands: &[lopdf::Object]) {
        let start = self.text_matrix.then(self.ctm);
        let (x, y) = start.origin();
        let height = (self.font_size * start.vertical_scale()).max(0.01);

        let font = self.font.as_ref().and_then(|f| self.fonts.get(f));
        let mut run = String::new();
        let mut advance = 0.0f32;
        if let Some(font) = font {
            let state = ShowState {
                font,
                size: self.font_size,
                char_spacing: self.char_spacing,
                word_spacing: self.word_spacing,
                scale: self.horizontal_scale,
            };
            state.collect(operands, &mut run, &mut advance, 0);
        }
        let has_widths = font.is_some_and(|f| f.widths.is_some());
        self.text_matrix = Matrix::translate(advance, 0.0).then(self.text_matrix);
        let end_x = has_widths.then(|| self.text_matrix.then(self.ctm).origin().0);

        if run.trim().is_empty() {
            if !run.is_empty() && !self.out.is_empty() && !self.out.ends_with(char::is_whitespace) {
                self.out.push(' ');
            }
            if let Some(last) = &mut self.last {
                last.end_x = end_x;
            }
            return;
        }

        if let Some(last) = self.last {
            let dy = last.y - y;
            let size = height.max(last.height);
            if dy.abs() < size * 0.5 {
                let gap = match last.end_x {
                    Some(end) => x - end > size * 0.15,
                    // Without widths we cannot tell a kern from a space; a run that
                    // starts further right is most often a new word or table cell.
                    None => x > last.x,
                };
                if gap
                    && !self.out.ends_with(char::is_whitespace)
                    && !run.starts_with(char::is_whitespace)
                {
                    self.out.push(' ');
                }
            } else {
                let typical = self.line_gap.unwrap_or(size * 1.2);
                let paragraph = dy < 0.0 || dy > (typical * 1.4).max(size * 1.6);
                if !paragraph && dy > size * 0.8 {
                    self.line_gap = Some(dy);
                }
                let trimmed = self.out.trim_end_matches([' ', '\t']).len();
                self.out.truncate(trimmed);
                self.out.push_str(if paragraph { "\n\n" } else { "\n" });
            }
        }
        self.out.push_str(&run);
        self.last = Some(LastRun {
            x,
            y,
            end_x,
            height,
        });
    }
}

/// What decoding and measuring one text-showing operation needs.
struct ShowState<'f, 'a> {
    font: &'f Font<'a>,
    size: f32,
    char_spacing: f32,
    word_spacing: f32,
    scale: f32,
}

impl ShowState<'_, '_> {
    /// Appends the decoded text to `out` and adds its width (in text space) to
    /// `advance`. In TJ arrays, numbers are kerning in thousandths of an em; a large
    /// negative one is how many writers render a word space without a space glyph.
    fn collect(
        &self,
        operands: &[lopdf::Object],
        out: &mut String,
        advance: &mut f32,
        depth: usize,
    ) {
        for operand in operands {
            match operand {
                lopdf::Object::String(bytes, _) => {
                    if let Some(Ok(s)) = self
                        .font
                        .encoding
                        .as_ref()
                        .map(|e| e.bytes_to_string(bytes))
                    {
                        out.push_str(&s);
                    }
                    *advance += self.width(bytes);
                }
                lopdf::Object::Array(items) if depth == 0 => {
                    self.collect(items, out, advance, depth + 1)
                }
                lopdf::Object::Integer(_) | lopdf::Object::Real(_) if depth > 0 => {
                    let adjust = operand.as_float().unwrap_or(0.0);
                    *advance -= adjust / 1000.0 * self.size * self.scale;
                    if adjust < -180.0 && !out.is_empty() && !out.ends_with(char::is_whitespace) {
                        out.push(' ');
                    }
                }
                _ => {}
            }
        }
    }

    fn width(&self, bytes: &[u8]) -> f32 {
        let Some(widths) = &self.font.widths else {
            return 0.0;
        };
        let glyph = |code: u32, is_space: bool| {
            let w = widths.of(code) / 1000.0 * self.size + self.char_spacing;
            (w + if is_space { self.word_spacing } else { 0.0 }) * self.scale
        };
        if self.font.two_byte {
            bytes
                .chunks(2)
                .map(|pair| {
                    glyph(
                        pair.iter().fold(0u32, |acc, b| acc << 8 | u32::from(*b)),
                        false,
                    )
                })
                .sum()
        } else {
            bytes.iter().map(|b| glyph(u32::from(*b), *b == b' ')).sum()
        }
    }
}

// ---------------------------------------------------------------------------------
// Chunking
// ---------------------------------------------------------------------------------

/// A passage of a document, with the path of headings it sits under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub heading: Option<String>,
    pub content: String,
}

/// Splits text along Markdown ATX headings and blank-line paragraphs into passages of
/// about `target_chars` (at most 1.5x, when a whole paragraph follows the overlap).
/// Paragraphs longer than the target are cut at sentence ends, else at whitespace.
/// Within a section, each chunk after the first starts with up to `overlap_chars` of
/// the previous one, cut at a word boundary. `heading` is the section's heading path,
/// e.g. "Shipping › Returns"; heading lines are not repeated in `content`.
pub fn chunk(text: &str, target_chars: usize, overlap_chars: usize) -> Vec<Chunk> {
    let target = target_chars.max(1);
    // More overlap than half a chunk would make each chunk mostly a repeat of the last.
    let overlap = overlap_chars.min(target / 2);
    let mut chunks = Vec::new();
    let mut headings: Vec<(usize, String)> = Vec::new();
    let mut section = Packer::new(None, target, overlap);
    let mut paragraph: Option<(usize, usize)> = None;
    let mut fence: Option<&str> = None;

    let mut offset = 0usize;
    for line in text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let content = line.trim_end_matches(['\n', '\r']);

        if let Some(marker) = fence {
            if content.trim_start().starts_with(marker) {
                fence = None;
            }
            paragraph = Some((paragraph.map_or(start, |(s, _)| s), start + content.len()));
            continue;
        }
        let trimmed = content.trim_start();
        if content.len() - trimmed.len() <= 3 {
            if let Some(marker) = ["```", "~~~"].into_iter().find(|m| trimmed.starts_with(m)) {
                fence = Some(marker);
                paragraph = Some((paragraph.map_or(start, |(s, _)| s), start + content.len()));
                continue;
            }
            if let Some((level, title)) = atx_heading(content) {
                if let Some((s, e)) = paragraph.take() {
                    section.add_paragraph(&text[s..e]);
                }
                section.finish(&mut chunks);
                headings.retain(|(l, _)| *l < level);
                if !title.is_empty() {
                    headings.push((level, title.to_owned()));
                }
                let path = (!headings.is_empty()).then(|| {
                    headings
                        .iter()
                        .map(|(_, t)| t.as_str())
                        .collect::<Vec<_>>()
                        .join(" › ")
                });
                section = Packer::new(path, target, overlap);
                continue;
            }
        }
        if content.trim().is_empty() {
            if let Some((s, e)) = paragraph.take() {
                section.add_paragraph(&text[s..e]);
            }
        } else {
            paragraph = Some((paragraph.map_or(start, |(s, _)| s), start + content.len()));
        }
    }
    if let Some((s, e)) = paragraph.take() {
        section.add_paragraph(&text[s..e]);
    }
    section.finish(&mut chunks);
    chunks
}

/// Longer "headings" are paragraphs that start with `#`: a heading is repeated
/// with every passage of its section (and in prompts and citations), so one
/// of megabytes would be copied thousands of times.
const MAX_HEADING_CHARS: usize = 200;

/// Recognises `#`..`######` headings (up to three leading spaces, a space or end of
/// line after the hashes, at most [`MAX_HEADING_CHARS`] of title) and strips an
/// optional closing run of `#`.
fn atx_heading(line: &str) -> Option<(usize, &str)> {
    let trimmed = line.trim_start_matches(' ');
    if line.len() - trimmed.len() > 3 {
        return None;
    }
    let level = trimmed.bytes().take_while(|b| *b == b'#').count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let rest = &trimmed[level..];
    if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return None;
    }
    let mut title = rest.trim();
    let without_closing = title.trim_end_matches('#');
    if without_closing.is_empty() || without_closing.ends_with([' ', '\t']) {
        title = without_closing.trim_end();
    }
    if title.chars().nth(MAX_HEADING_CHARS).is_some() {
        return None;
    }
    Some((level, title))
}

/// Packs one section's paragraphs into chunks.
struct Packer {
    heading: Option<String>,
    target: usize,
    overlap: usize,
    chunks: Vec<Chunk>,
    current: String,
    current_chars: usize,
    /// Whether `current` holds anything beyond the overlap copied from the last chunk;
    /// a chunk that is only overlap must never be emitted.
    has_body: bool,
}

impl Packer {
    fn new(heading: Option<String>, target: usize, overlap: usize) -> Self {
        Self {
            heading,
            target,
            overlap,
            chunks: Vec::new(),
            current: String::new(),
            current_chars: 0,
            has_body: false,
        }
    }

    /// Room left in the current chunk for text joined with a two-char separator.
    fn room(&self) -> usize {
        let used = if self.current.is_empty() {
            0
        } else {
            self.current_chars + 2
        };
        self.target.saturating_sub(used)
    }

    fn add_paragraph(&mut self, paragraph: &str) {
        let paragraph = paragraph.trim();
        if paragraph.is_empty() {
            return;
        }
        let chars = paragraph.chars().count();
        if chars <= self.room() {
            self.push(paragraph, chars, "\n\n");
            return;
        }
        if chars <= self.target {
            // Whole paragraphs read better than halves; after the overlap this stays
            // within 1.5x target because overlap is at most half of it.
            if self.has_body {
                self.flush();
            }
            self.push(paragraph, chars, "\n\n");
            return;
        }

        let mut pieces = Pieces {
            text: paragraph,
            pos: 0,
        };
        let mut separator = "\n\n";
        loop {
            // Filling a nearly full chunk would mean a sliver cut mid-sentence.
            if self.has_body && self.room() < (self.target / 3).max(1) {
                self.flush();
            }
            let Some((piece, piece_chars)) = pieces.next(self.room().max(1)) else {
                break;
            };
            self.push(piece, piece_chars, separator);
            separator = " ";
            if pieces.pos < pieces.text.len() {
                self.flush();
            }
        }
    }

    fn push(&mut self, piece: &str, chars: usize, separator: &str) {
        if !self.current.is_empty() {
            self.current.push_str(separator);
            self.current_chars += separator.chars().count();
        }
        self.current.push_str(piece);
        self.current_chars += chars;
        self.has_body = true;
    }

    fn flush(&mut self) {
        let tail = overlap_tail(&self.current, self.overlap).to_owned();
        let content = std::mem::replace(&mut self.current, tail);
        self.current_chars = self.current.chars().count();
        self.has_body = false;
        self.chunks.push(Chunk {
            heading: self.heading.clone(),
            content,
        });
    }

    fn finish(mut self, out: &mut Vec<Chunk>) {
        if self.has_body {
            self.flush();
        }
        out.append(&mut self.chunks);
    }
}

/// The last `max_chars` or fewer of `text`, starting at a word boundary.
fn overlap_tail(text: &str, max_chars: usize) -> &str {
    if max_chars == 0 {
        return "";
    }
    let Some((cut, _)) = text.char_indices().rev().nth(max_chars - 1) else {
        return text.trim_start();
    };
    let starts_word = text[..cut].ends_with(char::is_whitespace);
    let tail = &text[cut..];
    if starts_word {
        return tail.trim_start();
    }
    match tail.find(char::is_whitespace) {
        Some(space) => tail[space..].trim_start(),
        None => "",
    }
}

/// Cuts a long paragraph into consecutive pieces, each taken with its own size limit
/// so the first piece can fill what is left of a chunk.
struct Pieces<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Pieces<'a> {
    /// The next piece of at most `max` chars: whole sentences where they fit, else cut at
    /// whitespace, else (one enormous word) at a char boundary. Scans at most `max + 1`
    /// chars, so splitting stays linear in the paragraph's length.
    fn next(&mut self, max: usize) -> Option<(&'a str, usize)> {
        let rest = &self.text[self.pos..];
        let rest = rest.trim_start();
        let start = self.text.len() - rest.len();
        if rest.is_empty() {
            self.pos = self.text.len();
            return None;
        }
        // (byte offset in rest, chars before it) of the latest cut candidates.
        let mut sentence_cut: Option<(usize, usize)> = None;
        let mut space_cut: Option<(usize, usize)> = None;
        let mut prev: Option<char> = None;
        let mut end = None;
        for (count, (i, c)) in rest.char_indices().enumerate() {
            if c.is_whitespace() {
                if prev.is_some_and(|p| !p.is_whitespace()) {
                    space_cut = Some((i, count));
                    if prev.is_some_and(ends_sentence) {
                        sentence_cut = Some((i, count));
                    }
                }
            } else {
                if prev.is_some_and(|p| matches!(p, '。' | '！' | '？')) {
                    sentence_cut = Some((i, count));
                }
                if count >= max {
                    end = Some((i, count));
                    break;
                }
            }
            prev = Some(c);
        }
        let Some(hard) = end else {
            self.pos = self.text.len();
            let piece = rest.trim_end();
            return Some((piece, piece.chars().count()));
        };
        let (cut, chars) = sentence_cut
            .filter(|(_, n)| *n > 0 && *n >= max / 2)
            .or(space_cut.filter(|(_, n)| *n > 0))
            .unwrap_or(hard);
        self.pos = start + cut;
        let piece = rest[..cut].trim_end();
        // Trailing whitespace was only ever counted before the cut, so trimming it
        // changes the count by exactly the bytes removed when it is ASCII; recount if not.
        let chars = if piece.len() == cut {
            chars
        } else {
            piece.chars().count()
        };
        Some((piece, chars))
    }
}

fn ends_sentence(c: char) -> bool {
    matches!(c, '.' | '!' | '?' | '…' | '。' | '！' | '？' | ':' | ';')
}

// ---------------------------------------------------------------------------------
// Query terms
// ---------------------------------------------------------------------------------

/// Words a question is searched without: PostgreSQL's `english` stop words
/// (its full-text configuration drops them from documents, so a question
/// holding them would find nothing there and something on SQLite), and a few
/// greetings and fillers of our own.
const STOP_WORDS: &[&str] = &[
    "a",
    "about",
    "above",
    "after",
    "again",
    "against",
    "all",
    "am",
    "an",
    "and",
    "any",
    "are",
    "as",
    "at",
    "be",
    "because",
    "been",
    "before",
    "being",
    "below",
    "between",
    "both",
    "but",
    "by",
    "can",
    "did",
    "do",
    "does",
    "doing",
    "don",
    "down",
    "during",
    "each",
    "few",
    "for",
    "from",
    "further",
    "had",
    "has",
    "have",
    "having",
    "he",
    "hello",
    "her",
    "here",
    "hers",
    "herself",
    "hi",
    "him",
    "himself",
    "his",
    "how",
    "i",
    "if",
    "in",
    "into",
    "is",
    "it",
    "its",
    "itself",
    "just",
    "me",
    "more",
    "most",
    "my",
    "myself",
    "no",
    "nor",
    "not",
    "now",
    "of",
    "off",
    "on",
    "once",
    "only",
    "or",
    "other",
    "our",
    "ours",
    "ourselves",
    "out",
    "over",
    "own",
    "please",
    "s",
    "same",
    "she",
    "should",
    "so",
    "some",
    "such",
    "t",
    "than",
    "that",
    "the",
    "their",
    "theirs",
    "them",
    "themselves",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "through",
    "to",
    "too",
    "under",
    "until",
    "up",
    "very",
    "was",
    "we",
    "were",
    "what",
    "when",
    "where",
    "which",
    "while",
    "who",
    "whom",
    "why",
    "will",
    "with",
    "would",
    "you",
    "your",
    "yours",
    "yourself",
    "yourselves",
];

/// Latin letters with a diacritic, and the plain letter each is searched as:
/// exactly the ones SQLite's `unicode61` tokenizer folds (remove_diacritics=1).
/// PostgreSQL's index folds the same ones (migration
/// `2026-12-06-000010_fold_search_text`), and the coverage score and quoting
/// too, so "cafe" finds "Cafés" alike everywhere. The letters it keeps (ø, æ,
/// ß, ł, đ, ħ, ı, œ, þ, ð, ŀ, ŧ) are kept everywhere.
pub const FOLDED: &[(char, char)] = &[
    ('à', 'a'),
    ('á', 'a'),
    ('â', 'a'),
    ('ã', 'a'),
    ('ä', 'a'),
    ('å', 'a'),
    ('ā', 'a'),
    ('ă', 'a'),
    ('ą', 'a'),
    ('ç', 'c'),
    ('ć', 'c'),
    ('ĉ', 'c'),
    ('ċ', 'c'),
    ('č', 'c'),
    ('ď', 'd'),
    ('è', 'e'),
    ('é', 'e'),
    ('ê', 'e'),
    ('ë', 'e'),
    ('ē', 'e'),
    ('ĕ', 'e'),
    ('ė', 'e'),
    ('ę', 'e'),
    ('ě', 'e'),
    ('ĝ', 'g'),
    ('ğ', 'g'),
    ('ġ', 'g'),
    ('ģ', 'g'),
    ('ĥ', 'h'),
    ('ì', 'i'),
    ('í', 'i'),
    ('î', 'i'),
    ('ï', 'i'),
    ('ĩ', 'i'),
    ('ī', 'i'),
    ('ĭ', 'i'),
    ('į', 'i'),
    ('ĵ', 'j'),
    ('ķ', 'k'),
    ('ĺ', 'l'),
    ('ļ', 'l'),
    ('ľ', 'l'),
    ('ñ', 'n'),
    ('ń', 'n'),
    ('ņ', 'n'),
    ('ň', 'n'),
    ('ò', 'o'),
    ('ó', 'o'),
    ('ô', 'o'),
    ('õ', 'o'),
    ('ö', 'o'),
    ('ō', 'o'),
    ('ŏ', 'o'),
    ('ő', 'o'),
    ('ŕ', 'r'),
    ('ŗ', 'r'),
    ('ř', 'r'),
    ('ś', 's'),
    ('ŝ', 's'),
    ('ş', 's'),
    ('š', 's'),
    ('ș', 's'),
    ('ţ', 't'),
    ('ť', 't'),
    ('ț', 't'),
    ('ù', 'u'),
    ('ú', 'u'),
    ('û', 'u'),
    ('ü', 'u'),
    ('ũ', 'u'),
    ('ū', 'u'),
    ('ŭ', 'u'),
    ('ů', 'u'),
    ('ű', 'u'),
    ('ų', 'u'),
    ('ŵ', 'w'),
    ('ý', 'y'),
    ('ÿ', 'y'),
    ('ŷ', 'y'),
    ('ź', 'z'),
    ('ż', 'z'),
    ('ž', 'z'),
];

/// `text` lower-cased and with [`FOLDED`] letters made plain: how questions,
/// passages and the indexes compare words.
pub fn search_fold(text: &str) -> String {
    text.chars()
        .flat_map(char::to_lowercase)
        .map(|c| {
            if c.is_ascii() {
                return c;
            }
            FOLDED
                .iter()
                .find(|(marked, _)| *marked == c)
                .map_or(c, |(_, plain)| *plain)
        })
        .collect()
}

const MAX_TERMS: usize = 24;
const MAX_TERM_CHARS: usize = 48;

/// Search terms from a visitor's question. Only lower-cased Unicode alphanumerics
/// survive, so no FTS5 or tsquery operator, quote or wildcard can get through. Stop
/// words and one-char words are dropped and repeats removed, keeping the first 24
/// terms, each cut to 48 chars.
pub fn terms(query: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for word in query.split(|c: char| !c.is_alphanumeric()) {
        if out.len() == MAX_TERMS {
            break;
        }
        // Lower-casing can produce combining marks (İ → i̇), which are not alphanumeric.
        let term: String = search_fold(word)
            .chars()
            .filter(|c| c.is_alphanumeric())
            .take(MAX_TERM_CHARS)
            .collect();
        if term.chars().nth(1).is_none()
            || STOP_WORDS.contains(&term.as_str())
            || out.contains(&term)
        {
            continue;
        }
        out.push(term);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgresql_folds_exactly_the_letters_the_rust_side_folds() {
        let sql = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/migrations/postgres/2026-12-06-000010_fold_search_text/up.sql"
        ));
        let marked = FOLDED.iter().map(|(m, _)| *m);
        let from: String = marked
            .clone()
            .chain(marked.flat_map(char::to_uppercase))
            .collect();
        let plain: String = FOLDED.iter().map(|(_, p)| *p).collect();
        assert!(sql.contains(&format!("'{from}'")), "{sql}");
        assert!(sql.contains(&format!("'{plain}{plain}'")), "{sql}");
        assert_eq!(search_fold("Crème BRÛLÉE øre"), "creme brulee øre");
        assert_eq!(terms("Café? the CAFÉS, about"), ["cafe", "cafes"]);
    }

    const RETURNS_PDF: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/knowledge/returns.pdf"
    ));
    const RECEIPT_SENTENCE: &str =
        "Bikes can be returned within 30 days with the original receipt.";

    fn text(s: &str) -> String {
        extract(SourceFormat::Text, s.as_bytes()).unwrap()
    }

    fn html(s: &str) -> String {
        extract(SourceFormat::Html, s.as_bytes()).unwrap()
    }

    // --- format detection -------------------------------------------------------

    #[test]
    fn format_round_trips_through_its_db_name() {
        for f in [
            SourceFormat::Text,
            SourceFormat::Markdown,
            SourceFormat::Html,
            SourceFormat::Pdf,
        ] {
            assert_eq!(SourceFormat::parse(f.as_str()), Some(f));
        }
        assert_eq!(SourceFormat::parse("docx"), None);
        assert_eq!(SourceFormat::parse("PDF"), None);
    }

    #[test]
    fn format_from_extension_ignores_case_and_paths() {
        let cases = [
            ("notes.txt", SourceFormat::Text),
            ("NOTES.TEXT", SourceFormat::Text),
            ("guide.md", SourceFormat::Markdown),
            ("Guide.Markdown", SourceFormat::Markdown),
            ("faq.html", SourceFormat::Html),
            ("FAQ.HTM", SourceFormat::Html),
            ("policy.v2.PDF", SourceFormat::Pdf),
            (r"C:\Users\me\Desktop\faq.htm", SourceFormat::Html),
        ];
        for (name, want) in cases {
            assert_eq!(
                SourceFormat::from_upload(Some(name), None),
                Ok(want),
                "{name}"
            );
        }
    }

    #[test]
    fn extension_wins_over_content_type() {
        assert_eq!(
            SourceFormat::from_upload(Some("readme.md"), Some("application/octet-stream")),
            Ok(SourceFormat::Markdown)
        );
        assert_eq!(
            SourceFormat::from_upload(Some("page.html"), Some("text/plain")),
            Ok(SourceFormat::Html)
        );
    }

    #[test]
    fn content_type_decides_when_the_name_does_not() {
        let cases = [
            ("text/plain; charset=utf-8", SourceFormat::Text),
            ("Text/Markdown", SourceFormat::Markdown),
            ("text/x-markdown", SourceFormat::Markdown),
            (" text/html ;charset=UTF-8", SourceFormat::Html),
            ("application/pdf", SourceFormat::Pdf),
        ];
        for (ct, want) in cases {
            assert_eq!(SourceFormat::from_upload(None, Some(ct)), Ok(want), "{ct}");
            assert_eq!(
                SourceFormat::from_upload(Some("upload"), Some(ct)),
                Ok(want),
                "{ct}"
            );
            assert_eq!(
                SourceFormat::from_upload(Some("notes.log"), Some(ct)),
                Ok(want),
                "{ct}"
            );
        }
    }

    #[test]
    fn unsupported_uploads_name_what_was_given() {
        assert_eq!(
            SourceFormat::from_upload(Some("report.DOCX"), Some("application/octet-stream")),
            Err(TextError::Unsupported {
                given: ".docx".to_owned()
            })
        );
        assert_eq!(
            SourceFormat::from_upload(Some("upload"), Some("image/png")),
            Err(TextError::Unsupported {
                given: "image/png".to_owned()
            })
        );
        let none = SourceFormat::from_upload(None, None).unwrap_err();
        assert!(matches!(none, TextError::Unsupported { .. }));
        assert_eq!(
            SourceFormat::from_upload(Some("../../etc/passwd"), None),
            Err(TextError::Unsupported {
                given: "a file name without an extension".to_owned()
            })
        );
        let long = format!("x.{}", "z".repeat(5000));
        assert_eq!(
            SourceFormat::from_upload(Some(&long), None),
            Err(TextError::Unsupported {
                given: "an unknown extension".to_owned()
            })
        );
        let message = SourceFormat::from_upload(Some("a.exe"), None)
            .unwrap_err()
            .to_string();
        assert!(message.contains(".exe"), "{message}");
        for ext in ACCEPTED {
            assert!(
                message.contains(ext),
                "message should list {ext}: {message}"
            );
        }
    }

    #[test]
    fn titles_come_from_the_file_name_without_folders_or_extension() {
        assert_eq!(
            title_from_filename("Returns.md").as_deref(),
            Some("Returns")
        );
        assert_eq!(
            title_from_filename("C:\\Users\\sam\\Shop guide.v2.pdf").as_deref(),
            Some("Shop guide.v2")
        );
        assert_eq!(
            title_from_filename("../../etc/passwd").as_deref(),
            Some("passwd")
        );
        assert_eq!(title_from_filename("folder/.md"), None);
        assert_eq!(title_from_filename("  "), None);
        let long = format!("{}.txt", "a".repeat(500));
        assert_eq!(
            title_from_filename(&long).map(|t| t.chars().count()),
            Some(super::super::MAX_TITLE_CHARS)
        );
    }

    // --- plain text and Markdown -------------------------------------------------

    #[test]
    fn empty_uploads_are_rejected() {
        for format in [
            SourceFormat::Text,
            SourceFormat::Markdown,
            SourceFormat::Html,
            SourceFormat::Pdf,
        ] {
            assert_eq!(extract(format, b""), Err(TextError::Empty), "{format:?}");
        }
        assert_eq!(
            extract(SourceFormat::Text, b" \n\r\n\t \n"),
            Err(TextError::Empty)
        );
        assert_eq!(
            extract(SourceFormat::Text, b"\xEF\xBB\xBF"),
            Err(TextError::Empty)
        );
        assert_eq!(
            extract(
                SourceFormat::Html,
                b"<html><head><title>Hi</title></head><body> </body></html>"
            ),
            Err(TextError::Empty)
        );
    }

    #[test]
    fn text_is_normalised() {
        let raw = "\u{FEFF}Title  \r\n\r\n\r\n\r\nBody line one\t\r\nline two\rline three\n\n\n\n\nEnd   ";
        assert_eq!(
            text(raw),
            "Title\n\nBody line one\nline two\nline three\n\nEnd"
        );
    }

    #[test]
    fn markdown_is_kept_as_written() {
        let md = "# Shipping\n\nWe ship **fast**.\n\n## Returns\n\n- 30 days\n- receipt needed\n";
        assert_eq!(
            extract(SourceFormat::Markdown, md.as_bytes()).unwrap(),
            md.trim_end()
        );
    }

    #[test]
    fn legacy_encodings_are_read() {
        // "Café – naïve" in Windows-1252.
        let cp1252 = b"Caf\xE9 \x96 na\xEFve";
        assert_eq!(extract(SourceFormat::Text, cp1252).unwrap(), "Café – naïve");
        let mut utf16 = vec![0xFF, 0xFE];
        utf16.extend("Hé llo\r\n".encode_utf16().flat_map(u16::to_le_bytes));
        assert_eq!(extract(SourceFormat::Text, &utf16).unwrap(), "Hé llo");
    }

    #[test]
    fn binary_is_rejected() {
        assert_eq!(
            extract(SourceFormat::Text, b"hello\0world"),
            Err(TextError::Binary)
        );
        assert_eq!(
            extract(SourceFormat::Markdown, b"abc\0"),
            Err(TextError::Binary)
        );
        let controls: Vec<u8> = (0..200u8)
            .map(|i| if i % 3 == 0 { 0x01 } else { b'a' + i % 26 })
            .collect();
        assert_eq!(
            extract(SourceFormat::Text, &controls),
            Err(TextError::Binary)
        );
        let noise: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 | 0x80)
            .collect();
        assert_eq!(extract(SourceFormat::Html, &noise), Err(TextError::Binary));
        // One stray escape code in real text is tolerated, and removed.
        let one = format!("{}\x1b{}", "word ".repeat(40), "end");
        assert!(!text(&one).contains('\x1b'));
    }

    #[test]
    fn mislabelled_uploads_are_named() {
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
        assert_eq!(
            extract(SourceFormat::Text, png),
            Err(TextError::Mislabelled {
                looks_like: "a PNG image"
            })
        );
        assert_eq!(
            extract(SourceFormat::Text, b"%PDF-1.7\n1 0 obj\n"),
            Err(TextError::Mislabelled {
                looks_like: "a PDF"
            })
        );
        assert_eq!(
            extract(SourceFormat::Markdown, RETURNS_PDF),
            Err(TextError::Mislabelled {
                looks_like: "a PDF"
            })
        );
        assert_eq!(
            extract(SourceFormat::Html, b"\xFF\xD8\xFF\xE0\0\x10JFIF"),
            Err(TextError::Mislabelled {
                looks_like: "a JPEG image"
            })
        );
        assert_eq!(
            extract(SourceFormat::Text, b"GIF89a...."),
            Err(TextError::Mislabelled {
                looks_like: "a GIF image"
            })
        );
        assert!(matches!(
            extract(SourceFormat::Text, b"PK\x03\x04\x14\0"),
            Err(TextError::Mislabelled { .. })
        ));

        assert_eq!(
            extract(
                SourceFormat::Pdf,
                b"Just some notes, saved as .pdf by mistake."
            ),
            Err(TextError::Mislabelled {
                looks_like: "plain text"
            })
        );
        assert_eq!(
            extract(SourceFormat::Pdf, png),
            Err(TextError::Mislabelled {
                looks_like: "a PNG image"
            })
        );
        assert!(matches!(
            extract(SourceFormat::Pdf, b"\0\x01\x02\x03garbage"),
            Err(TextError::Mislabelled { .. })
        ));
        let message = extract(SourceFormat::Pdf, png).unwrap_err().to_string();
        assert!(message.contains("PNG"), "{message}");
    }

    // --- HTML ----------------------------------------------------------------

    #[test]
    fn html_drops_invisible_parts() {
        let page = r#"<!DOCTYPE html>
            <html><head><title>Secret title</title><style>body { color: red }</style>
            <script>var x = "<p>not text</p>"; if (a < b) alert(1);</script></head>
            <body><!-- a comment <p>hidden</p> -->
            <noscript><p>Enable JS</p></noscript>
            <template><p>Template row</p></template>
            <p>Visible <b>bold</b> text.</p>
            <SCRIPT type="text/javascript">document.write("</p>nope")</SCRIPT >
            <style media="print">.x { content: "<b>" }</style>
            <script>var s = "<script>"; if (a<!--b) { x("</p><template>") }</script><p>After.</p>
            <script src="a.js"/>var token = "x"; trackUser()</script>
            <style/>.y { color: blue }</style><noscript/><p>No script</p></noscript>
            </body></html>"#;
        assert_eq!(html(page), "Visible bold text.\n\nAfter.");
    }

    #[test]
    fn html_structure_becomes_headings_and_breaks() {
        let page = "<h1>Shipping</h1><p>We ship <em>worldwide</em>.</p><p>Fast.</p>\
                    <h2 class=\"x\">Returns &amp; refunds</h2><div>Line one<br>Line two<br/>Line three</div>\
                    <ul><li>First</li><li>Second</li></ul><table><tr><td>A</td><td>B</td></tr><tr><td>C</td><td>D</td></tr></table>";
        assert_eq!(
            html(page),
            "# Shipping\n\nWe ship worldwide.\n\nFast.\n\n## Returns & refunds\n\nLine one\nLine two\nLine three\n\n\
             - First\n- Second\n\nA B\nC D"
        );
    }

    #[test]
    fn html_headings_feed_chunk_heading_paths() {
        let page = "<h1>Shop</h1><p>Intro.</p><h2>Returns</h2><p>Within 30 days.</p>";
        let chunks = chunk(&html(page), 200, 20);
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[1].heading.as_deref(), Some("Shop › Returns"));
        assert_eq!(chunks[1].content, "Within 30 days.");
    }

    #[test]
    fn html_entities_decode_to_text_never_markup() {
        let page = "<p>&lt;script&gt;alert(1)&lt;/script&gt; &amp;amp; &quot;q&quot; &#39;s&#39; a&nbsp;b &#65;&#x42;&#X43; \
                    &copy; &unknown; AT&T &#0; &#x110000;</p>";
        assert_eq!(
            html(page),
            "<script>alert(1)</script> &amp; \"q\" 's' a b ABC © &unknown; AT&T \u{FFFD} \u{FFFD}"
        );
    }

    #[test]
    fn accented_letters_written_as_entities_are_letters() {
        assert_eq!(
            html(
                "<p>Caf&eacute; M&uuml;ller &Agrave; la fa&ccedil;on, Stra&szlig;e, &scaron;kola, &Aring;se, Erd&odblac;s, &Lstrok;&oacute;d&zacute;</p>"
            ),
            "Café Müller À la façon, Straße, škola, Åse, Erdős, Łódź"
        );
        // A mark no letter takes, or no letter at all: left as written.
        assert_eq!(
            html("&qacute; &uml; &1acute; &eacutex;"),
            "&qacute; &uml; &1acute; &eacutex;"
        );
    }

    #[test]
    fn html_tolerates_broken_markup() {
        assert_eq!(html("a < b and c <= d"), "a < b and c <= d");
        assert_eq!(html("<p title='x > y'>quoted</p>"), "quoted");
        assert_eq!(
            html("<head><title>t</title><p>No closing head</p>"),
            "No closing head"
        );
        assert_eq!(html("before<!-- never closed"), "before");
        assert_eq!(html("<p>open <b>tags"), "open tags");
        assert_eq!(
            html("<pre>  keep\n    indent</pre><p>x</p>"),
            "  keep\n    indent\n\nx"
        );
        assert_eq!(
            extract(SourceFormat::Html, b"<script>only script"),
            Err(TextError::Empty)
        );
        assert_eq!(html("<h1>Multi<br>line</h1>"), "# Multi line");
    }

    // --- PDF ----------------------------------------------------------------

    #[test]
    fn pdf_fixture_yields_its_text() {
        let text = extract(SourceFormat::Pdf, RETURNS_PDF).unwrap();
        assert!(text.contains(RECEIPT_SENTENCE), "{text}");
        assert!(text.starts_with("Harbor Bikes returns policy.\n"), "{text}");
        // Wrapped lines stay lines; the gap between the two paragraphs becomes a blank line.
        assert!(
            text.contains("with all parts\nand accessories included.\n\nRefunds go back"),
            "{text}"
        );
        assert!(text.ends_with("happy to help with repairs."), "{text}");
        let chunks = chunk(&text, 1000, 100);
        assert_eq!(chunks.len(), 1);
        assert!(chunks[0].content.contains(RECEIPT_SENTENCE));
    }

    #[test]
    fn broken_pdfs_are_errors_not_panics() {
        let truncated = &RETURNS_PDF[..RETURNS_PDF.len() / 2];
        assert!(extract(SourceFormat::Pdf, truncated).is_err());
        assert!(matches!(
            extract(SourceFormat::Pdf, b"%PDF-1.4\nthis is not really a pdf"),
            Err(TextError::Pdf(_))
        ));

        // Flip bytes throughout the fixture; each result must be an answer, never a panic.
        for step in [7usize, 13, 31, 97] {
            let mut bytes = RETURNS_PDF.to_vec();
            for i in (step..bytes.len()).step_by(step) {
                bytes[i] ^= 0x5A;
            }
            let _ = extract(SourceFormat::Pdf, &bytes);
        }
    }

    /// A minimal uncompressed PDF, one page per content stream, all using font /F1.
    fn pdf(pages: &[&str], font: &str) -> Vec<u8> {
        let n = pages.len();
        let kids: Vec<String> = (0..n).map(|i| format!("{} 0 R", 4 + 2 * i)).collect();
        let mut objects = vec![
            "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
            format!("<< /Type /Pages /Kids [{}] /Count {n} >>", kids.join(" ")),
            font.to_owned(),
        ];
        for (i, content) in pages.iter().enumerate() {
            objects.push(format!(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] \
                 /Resources << /Font << /F1 3 0 R >> >> /Contents {} 0 R >>",
                5 + 2 * i
            ));
            objects.push(format!(
                "<< /Length {} >>\nstream\n{content}\nendstream",
                content.len()
            ));
        }
        pdf_file(&objects)
    }

    /// A PDF of `pages` pages that all show one shared content stream.
    fn pdf_sharing_one_stream(pages: usize, content: &str) -> Vec<u8> {
        let kids: Vec<String> = (0..pages).map(|i| format!("{} 0 R", 5 + i)).collect();
        let mut objects = vec![
            "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
            format!(
                "<< /Type /Pages /Kids [{}] /Count {pages} >>",
                kids.join(" ")
            ),
            HELVETICA.to_owned(),
            format!(
                "<< /Length {} >>\nstream\n{content}\nendstream",
                content.len()
            ),
        ];
        for _ in 0..pages {
            objects.push(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] \
                 /Resources << /Font << /F1 3 0 R >> >> /Contents 4 0 R >>"
                    .to_owned(),
            );
        }
        pdf_file(&objects)
    }

    #[test]
    fn a_pdf_whose_pages_share_one_huge_stream_is_refused_not_expanded() {
        let words = "returns accepted within thirty days ".repeat(1_000);
        let content = format!("BT /F1 12 Tf 72 700 Td ({words}) Tj ET");
        let bytes = pdf_sharing_one_stream(2_000, &content);
        assert!(bytes.len() < 400_000, "{}", bytes.len());
        match extract(SourceFormat::Pdf, &bytes) {
            Err(TextError::Pdf(why)) => assert!(why.contains("far more text"), "{why}"),
            other => panic!("expected a refusal, got {:?}", other.map(|t| t.len())),
        }
        // A few pages sharing it are fine.
        let text = extract(SourceFormat::Pdf, &pdf_sharing_one_stream(3, &content)).unwrap();
        assert!(text.contains("returns accepted"));
    }

    /// A PDF file of `objects`, numbered from 1 (the first is the catalog).
    fn pdf_file(objects: &[String]) -> Vec<u8> {
        let mut out = String::from("%PDF-1.4\n");
        let mut offsets = Vec::new();
        for (i, body) in objects.iter().enumerate() {
            offsets.push(out.len());
            out.push_str(&format!("{} 0 obj\n{body}\nendobj\n", i + 1));
        }
        let xref = out.len();
        out.push_str(&format!(
            "xref\n0 {}\n0000000000 65535 f \n",
            objects.len() + 1
        ));
        for offset in offsets {
            out.push_str(&format!("{offset:010} 00000 n \n"));
        }
        out.push_str(&format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        ));
        out.into_bytes()
    }

    const HELVETICA: &str =
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>";

    #[test]
    fn pdf_pages_are_separated_by_blank_lines() {
        let bytes = pdf(
            &[
                "BT /F1 12 Tf 72 700 Td (Page one) Tj ET",
                "BT /F1 12 Tf 72 700 Td (Page two) Tj ET",
            ],
            HELVETICA,
        );
        assert_eq!(
            extract(SourceFormat::Pdf, &bytes).unwrap(),
            "Page one\n\nPage two"
        );
    }

    #[test]
    fn pdf_word_gaps_become_spaces() {
        // Large negative TJ adjustments are word spaces; small ones are kerning.
        let tj = pdf(
            &["BT /F1 12 Tf 72 700 Td [(Re)-20(turns)-300(accepted)] TJ ET"],
            HELVETICA,
        );
        assert_eq!(extract(SourceFormat::Pdf, &tj).unwrap(), "Returns accepted");
        // Without glyph widths, a run further along the same line is a new word.
        let td = pdf(
            &["BT /F1 12 Tf 72 700 Td (Hello) Tj 40 0 Td (world) Tj 0 -14 Td (next) Tj ET"],
            HELVETICA,
        );
        assert_eq!(
            extract(SourceFormat::Pdf, &td).unwrap(),
            "Hello world\nnext"
        );
    }

    #[test]
    fn pdf_kerned_runs_join_when_glyph_widths_say_so() {
        let widths = vec!["500"; 95].join(" ");
        let font = format!(
            "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding \
             /FirstChar 32 /LastChar 126 /Widths [{widths}] >>"
        );
        // At 10pt each glyph is 5 units wide, so "Ca" ends 10 units along.
        let kerned = pdf(
            &["BT /F1 10 Tf 72 700 Td (Ca) Tj 10.4 0 Td (fe) Tj ET"],
            &font,
        );
        assert_eq!(extract(SourceFormat::Pdf, &kerned).unwrap(), "Cafe");
        let spaced = pdf(
            &["BT /F1 10 Tf 72 700 Td (Ca) Tj 14 0 Td (fe) Tj ET"],
            &font,
        );
        assert_eq!(extract(SourceFormat::Pdf, &spaced).unwrap(), "Ca fe");
    }

    #[test]
    fn pdf_without_text_is_empty() {
        let bytes = pdf(&["0 0 100 100 re f"], HELVETICA);
        assert_eq!(extract(SourceFormat::Pdf, &bytes), Err(TextError::Empty));
    }

    #[test]
    fn pdf_error_messages_are_short_and_user_facing() {
        let err = extract(SourceFormat::Pdf, b"%PDF-1.4\ngarbage").unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("The PDF could not be read: "),
            "{message}"
        );
        assert!(message.len() < 120, "{message}");
    }

    // --- chunking ------------------------------------------------------------

    #[test]
    fn chunks_carry_heading_paths() {
        let doc = "Preface text.\n\n# Shipping\n\nWe ship.\n\n## Returns ##\n\nWithin 30 days.\n\n### Damaged\n\nCall us.\n\n\
                   ## Exchanges\n\nSwap sizes.\n\n#   \n\nNo heading here.\n\n# Empty\n\n# Contact\nmail@example.com";
        let chunks = chunk(doc, 500, 50);
        let pairs: Vec<(Option<&str>, &str)> = chunks
            .iter()
            .map(|c| (c.heading.as_deref(), c.content.as_str()))
            .collect();
        assert_eq!(
            pairs,
            vec![
                (None, "Preface text."),
                (Some("Shipping"), "We ship."),
                (Some("Shipping › Returns"), "Within 30 days."),
                (Some("Shipping › Returns › Damaged"), "Call us."),
                (Some("Shipping › Exchanges"), "Swap sizes."),
                (None, "No heading here."),
                (Some("Contact"), "mail@example.com"),
            ]
        );
    }

    #[test]
    fn hashes_that_are_not_headings_stay_content() {
        let doc = "# Setup\n\n#hashtag and #1 are text.\n\n```\n# a shell comment\n```\n\n    # indented code";
        let chunks = chunk(doc, 500, 0);
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].heading.as_deref(), Some("Setup"));
        assert!(chunks[0].content.contains("#hashtag and #1 are text."));
        assert!(chunks[0].content.contains("# a shell comment"));
        assert!(chunks[0].content.contains("# indented code"));
    }

    #[test]
    fn paragraphs_pack_up_to_target() {
        let para = "word ".repeat(19) + "end."; // 99 chars
        let doc = [para.as_str(); 10].join("\n\n");
        let chunks = chunk(&doc, 250, 0);
        assert_eq!(chunks.len(), 5, "{chunks:#?}");
        for c in &chunks {
            assert_eq!(c.content, format!("{para}\n\n{para}"));
        }
    }

    #[test]
    fn chunks_overlap_within_a_section_only() {
        let sentences: Vec<String> = (0..40)
            .map(|i| format!("Sentence number {i} talks about returns."))
            .collect();
        let doc = format!("# A\n\n{}\n\n# B\n\nShort.", sentences.join(" "));
        let chunks = chunk(&doc, 200, 60);
        let in_a: Vec<&Chunk> = chunks
            .iter()
            .filter(|c| c.heading.as_deref() == Some("A"))
            .collect();
        assert!(in_a.len() > 3);
        for pair in in_a.windows(2) {
            let (prev, next) = (&pair[0].content, &pair[1].content);
            // The overlap is the longest suffix of prev that next starts with, up to 60 chars.
            let overlap = (1..=60.min(prev.len()))
                .rev()
                .filter(|n| prev.is_char_boundary(prev.len() - n))
                .map(|n| &prev[prev.len() - n..])
                .find(|tail| next.starts_with(tail))
                .unwrap_or("");
            assert!(
                overlap.chars().count() >= 20,
                "expected overlap between {prev:?} and {next:?}"
            );
            assert!(overlap.chars().count() <= 60);
            // Cut at a word boundary: the overlap starts a word of prev.
            let before = &prev[..prev.len() - overlap.len()];
            assert!(
                before.ends_with(char::is_whitespace),
                "{overlap:?} starts mid-word"
            );
        }
        let b: Vec<&Chunk> = chunks
            .iter()
            .filter(|c| c.heading.as_deref() == Some("B"))
            .collect();
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].content, "Short.");
        // Every sentence survives somewhere.
        let all: String = in_a
            .iter()
            .map(|c| c.content.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        for s in &sentences {
            assert!(all.contains(s.as_str()), "lost {s}");
        }
    }

    #[test]
    fn long_paragraphs_split_at_sentences_then_whitespace() {
        let sentence = "This sentence is exactly fifty characters long ok.";
        assert_eq!(sentence.len(), 50);
        let para = [sentence; 10].join(" ");
        for c in chunk(&para, 120, 0) {
            assert!(
                c.content.ends_with('.'),
                "split mid-sentence: {:?}",
                c.content
            );
            assert!(c.content.chars().count() <= 120);
        }
        let no_stops = "lorem ipsum dolor ".repeat(50);
        for c in chunk(&no_stops, 100, 0) {
            assert!(c.content.chars().count() <= 100);
            assert!(!c.content.starts_with(' ') && !c.content.ends_with(' '));
            for word in c.content.split_whitespace() {
                assert!(
                    ["lorem", "ipsum", "dolor"].contains(&word),
                    "word cut: {word}"
                );
            }
        }
    }

    #[test]
    fn chunk_sizes_stay_bounded() {
        let mut doc = String::new();
        for i in 0..300 {
            doc.push_str(&format!("Part {i}. "));
            doc.push_str(&"alpha beta gamma delta. ".repeat(i % 17));
            doc.push_str(if i % 5 == 0 {
                "\n\n## Heading\n\n"
            } else {
                "\n\n"
            });
        }
        doc.push_str(&"x".repeat(1000));
        for (target, overlap) in [(50, 10), (200, 50), (500, 400), (1, 0)] {
            let chunks = chunk(&doc, target, overlap);
            for c in &chunks {
                let n = c.content.chars().count();
                assert!(
                    n <= target + target / 2 + 2,
                    "chunk of {n} chars for target {target}: {:?}",
                    c.content
                );
                assert!(!c.content.trim().is_empty());
                assert_eq!(c.content, c.content.trim());
            }
        }
    }

    #[test]
    fn chunking_multibyte_text_never_splits_a_char() {
        let doc = "# Ünïcödé 🚲\n\n".to_owned()
            + &"Fahrräder können innerhalb von 30 Tagen zurückgegeben werden. ".repeat(20)
            + "\n\n"
            + &"自転車は領収書があれば30日以内に返品できます。".repeat(30)
            + "\n\n"
            + &"🚲".repeat(500);
        for (target, overlap) in [(7, 3), (40, 15), (100, 30), (333, 100)] {
            let chunks = chunk(&doc, target, overlap);
            assert!(!chunks.is_empty());
            for c in &chunks {
                assert_eq!(c.heading.as_deref(), Some("Ünïcödé 🚲"));
                assert!(c.content.chars().count() <= target + target / 2 + 2);
            }
        }
        let japanese = chunk(
            &"自転車は領収書があれば30日以内に返品できます。".repeat(30),
            100,
            0,
        );
        assert!(
            japanese.iter().all(|c| c.content.ends_with('。')),
            "{japanese:#?}"
        );
    }

    #[test]
    fn an_overlong_heading_is_text_not_a_heading_copied_into_every_passage() {
        let long_title = "word ".repeat(2_000);
        let body = "Ordinary text about returns. ".repeat(300);
        let text = format!("# {long_title}\n\n{body}");
        let chunks = chunk(&text, 900, 150);
        assert!(chunks.len() > 2);
        assert!(chunks.iter().all(|c| c.heading.is_none()));
        let stored: usize = chunks.iter().map(|c| c.content.len()).sum();
        assert!(stored < text.len() * 2, "{stored} bytes for {}", text.len());
        // A heading of ordinary length is still one.
        let chunks = chunk(&format!("# {}\n\nBody.", "a".repeat(200)), 900, 150);
        assert_eq!(chunks[0].heading.as_deref(), Some("a".repeat(200).as_str()));
    }

    #[test]
    fn empty_and_heading_only_text_produce_nothing() {
        assert!(chunk("", 100, 10).is_empty());
        assert!(chunk("\n\n  \n", 100, 10).is_empty());
        assert!(chunk("# One\n\n## Two\n\n# Three\n", 100, 10).is_empty());
    }

    #[test]
    fn chunking_ten_megabytes_is_linear() {
        let paragraph = "Harbor Bikes ships worldwide. Returns are accepted within 30 days! Questions? Ask us.\n\n";
        let mut doc = String::with_capacity(10 * 1024 * 1024 + 1024);
        let mut i = 0;
        while doc.len() < 10 * 1024 * 1024 {
            if i % 50 == 0 {
                doc.push_str(&format!("## Section {i}\n\n"));
            }
            doc.push_str(paragraph);
            if i % 97 == 0 {
                doc.push_str(&"ü".repeat(5000));
                doc.push_str("\n\n");
            }
            i += 1;
        }
        let started = std::time::Instant::now();
        let chunks = chunk(&doc, 1000, 150);
        let elapsed = started.elapsed();
        assert!(chunks.len() > 5000);
        // Generous so an unoptimised test build on a slow machine passes; release runs
        // in a fraction of this. Quadratic behaviour would take minutes.
        assert!(elapsed.as_secs() < 10, "chunking 10 MB took {elapsed:?}");
    }

    // --- query terms ---------------------------------------------------------

    #[test]
    fn terms_strip_search_syntax() {
        assert_eq!(
            terms(r#""foo" OR bar* NEAR( baz) -qux ^quux col:val"#),
            vec!["foo", "bar", "near", "baz", "qux", "quux", "col", "val"]
        );
        assert_eq!(terms("a & b | !c <-> d:*"), Vec::<String>::new());
        for term in terms(r#"'); DROP TABLE x; -- "x" AND (y OR z) {near/3} \"#) {
            assert!(term.chars().all(char::is_alphanumeric), "{term}");
        }
    }

    #[test]
    fn terms_drop_stop_words_short_words_and_duplicates() {
        assert_eq!(
            terms("Hi! How do I return my BIKE? Can I return it within 30 days, please?"),
            vec!["return", "bike", "within", "30", "days"]
        );
        assert_eq!(
            terms("What is the returns policy for e-bikes?"),
            vec!["returns", "policy", "bikes"]
        );
    }

    #[test]
    fn terms_handle_unicode_and_limits() {
        assert_eq!(
            terms("Fahrräder ZURÜCKGEBEN café—crème"),
            vec!["fahrrader", "zuruckgeben", "cafe", "creme"]
        );
        assert_eq!(terms("İstanbul"), vec!["istanbul"]);
        assert_eq!(terms("自転車 返品"), vec!["自転車", "返品"]);
        let many: String = (0..100).map(|i| format!("word{i} ")).collect();
        let got = terms(&many);
        assert_eq!(got.len(), 24);
        assert_eq!(got[0], "word0");
        let long = "x".repeat(100) + " ok";
        let got = terms(&long);
        assert_eq!(got[0].chars().count(), 48);
        assert_eq!(got[1], "ok");
    }
}
