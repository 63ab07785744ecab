//! An incremental server-sent-events parser: bytes go in as the network delivers
//! them, whole events come out.
//!
//! Follows the WHATWG event-stream rules that matter for model providers: lines
//! end in LF, CRLF or a lone CR; a blank line ends an event; `:` starts a
//! comment; several `data:` lines join with `\n`; `id` and `retry` are ignored.
//! Lines are split on bytes before decoding, so a UTF-8 character cut between
//! two network reads is never decoded in halves (CR and LF cannot occur inside
//! a multi-byte sequence).

use std::borrow::Cow;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, if the event had one.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

#[derive(Debug, Default)]
pub struct SseParser {
    /// The start of a line whose end has not arrived yet.
    partial: Vec<u8>,
    /// A chunk ended on CR: an LF at the start of the next one belongs to it.
    after_cr: bool,
    seen_first_line: bool,
    event: Option<String>,
    data: String,
    has_data: bool,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next bytes of the stream and returns the events they complete.
    pub fn feed(&mut self, mut chunk: &[u8]) -> Vec<SseEvent> {
        let mut events = Vec::new();
        if self.after_cr && !chunk.is_empty() {
            self.after_cr = false;
            if let Some((b'\n', rest)) = chunk.split_first() {
                chunk = rest;
            }
        }
        while let Some(end) = chunk.iter().position(|&b| b == b'\n' || b == b'\r') {
            let (line, rest) = chunk.split_at(end);
            let mut rest = rest.get(1..).unwrap_or_default();
            if chunk.get(end) == Some(&b'\r') {
                match rest.split_first() {
                    Some((b'\n', after)) => rest = after,
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
            let line: Cow<'_, [u8]> = if self.partial.is_empty() {
                Cow::Borrowed(line)
            } else {
                self.partial.extend_from_slice(line);
                Cow::Owned(std::mem::take(&mut self.partial))
            };
            self.line(&line, &mut events);
            chunk = rest;
        }
        self.partial.extend_from_slice(chunk);
        events
    }

    /// Call at the end of the stream. The standard drops an event that was not
    /// closed by a blank line, but some servers omit the final one, so a
    /// pending event is dispatched here instead of being lost.
    pub fn finish(&mut self) -> Option<SseEvent> {
        let mut events = Vec::new();
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.line(&line, &mut events);
        }
        self.after_cr = false;
        self.line(b"", &mut events);
        events.pop()
    }

    /// Bytes held for an event that is not complete yet; lets the caller put a
    /// bound on what a misbehaving server can make it buffer.
    pub fn pending_len(&self) -> usize {
        self.partial.len() + self.data.len()
    }

    fn line(&mut self, line: &[u8], events: &mut Vec<SseEvent>) {
        let mut line = line;
        if !self.seen_first_line {
            self.seen_first_line = true;
            line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        }
        if line.is_empty() {
            self.dispatch(events);
            return;
        }
        if line.first() == Some(&b':') {
            return;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = line.get(colon + 1..).unwrap_or_default();
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                self.data.push_str(&String::from_utf8_lossy(value));
                self.data.push('\n');
                self.has_data = true;
            }
            b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
            _ => {}
        }
    }

    fn dispatch(&mut self, events: &mut Vec<SseEvent>) {
        let event = self.event.take();
        if !std::mem::take(&mut self.has_data) {
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        if data.ends_with('\n') {
            data.pop();
        }
        events.push(SseEvent {
            event: event.filter(|e| !e.is_empty()),
            data,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(s: &str) -> SseEvent {
        SseEvent {
            event: None,
            data: s.to_owned(),
        }
    }

    fn feed_all(parts: &[&[u8]]) -> Vec<SseEvent> {
        let mut parser = SseParser::new();
        let mut out = Vec::new();
        for part in parts {
            out.extend(parser.feed(part));
        }
        out.extend(parser.finish());
        out
    }

    #[test]
    fn single_event() {
        assert_eq!(feed_all(&[b"data: hello\n\n"]), vec![data("hello")]);
    }

    #[test]
    fn event_field_and_multiple_events() {
        let out = feed_all(&[b"event: ping\ndata: {}\n\nevent: message_stop\ndata: {\"a\":1}\n\n"]);
        assert_eq!(
            out,
            vec![
                SseEvent {
                    event: Some("ping".into()),
                    data: "{}".into()
                },
                SseEvent {
                    event: Some("message_stop".into()),
                    data: "{\"a\":1}".into()
                },
            ]
        );
    }

    #[test]
    fn event_type_does_not_leak_into_the_next_event() {
        let out = feed_all(&[b"event: a\ndata: 1\n\ndata: 2\n\n"]);
        assert_eq!(out[1], data("2"));
    }

    #[test]
    fn crlf_and_lone_cr_line_endings() {
        assert_eq!(
            feed_all(&[b"data: a\r\n\r\ndata: b\r\rdata: c\n\n"]),
            vec![data("a"), data("b"), data("c")]
        );
    }

    #[test]
    fn crlf_split_between_chunks_is_one_line_ending() {
        // A CR at the end of one chunk and its LF at the start of the next must
        // not count as two line endings (which would dispatch an empty event
        // boundary in the middle of an event).
        let out = feed_all(&[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]);
        assert_eq!(out, vec![data("a\nb")]);
    }

    #[test]
    fn comments_are_ignored() {
        assert_eq!(
            feed_all(&[b": keep-alive\n\n:another\ndata: x\n\n"]),
            vec![data("x")]
        );
    }

    #[test]
    fn multi_line_data_joins_with_newline() {
        assert_eq!(
            feed_all(&[b"data: {\"a\":\ndata: 1}\n\n"]),
            vec![data("{\"a\":\n1}")]
        );
    }

    #[test]
    fn value_keeps_all_but_one_leading_space() {
        assert_eq!(
            feed_all(&[b"data:no space\n\ndata:  two\n\n"]),
            vec![data("no space"), data(" two")]
        );
    }

    #[test]
    fn field_without_colon_and_empty_data() {
        // `data` alone is a data field with an empty value.
        assert_eq!(feed_all(&[b"data\n\n"]), vec![data("")]);
    }

    #[test]
    fn unknown_fields_and_event_without_data_are_dropped() {
        assert_eq!(
            feed_all(&[b"id: 7\nretry: 100\n\nevent: x\n\ndata: y\n\n"]),
            vec![data("y")]
        );
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        let stream =
            "event: e\r\ndata: héllo 👋\r\n: c\r\ndata: 2\r\n\r\ndata: [DONE]\n\n".as_bytes();
        let whole = feed_all(&[stream]);
        assert_eq!(whole.len(), 2);
        assert_eq!(whole[0].data, "héllo 👋\n2");
        for i in 0..=stream.len() {
            for j in i..=stream.len() {
                let out = feed_all(&[&stream[..i], &stream[i..j], &stream[j..]]);
                assert_eq!(out, whole, "split at {i}/{j}");
            }
        }
    }

    #[test]
    fn byte_by_byte_utf8() {
        let stream = "data: ñ€𝄞\n\n".as_bytes();
        let mut parser = SseParser::new();
        let mut out = Vec::new();
        for b in stream {
            out.extend(parser.feed(std::slice::from_ref(b)));
        }
        assert_eq!(out, vec![data("ñ€𝄞")]);
    }

    #[test]
    fn finish_dispatches_an_unterminated_event() {
        assert_eq!(feed_all(&[b"data: [DONE]"]), vec![data("[DONE]")]);
        assert_eq!(feed_all(&[b"data: x\n"]), vec![data("x")]);
        assert_eq!(feed_all(&[b"data: x\n\n"]), vec![data("x")]);
    }

    #[test]
    fn leading_bom_is_skipped() {
        assert_eq!(feed_all(&[b"\xEF\xBB\xBFdata: a\n\n"]), vec![data("a")]);
    }

    #[test]
    fn pending_len_tracks_unfinished_input() {
        let mut parser = SseParser::new();
        assert!(parser.feed(b"data: abc").is_empty());
        assert_eq!(parser.pending_len(), 9);
        assert!(parser.feed(b"\n").is_empty());
        assert_eq!(parser.pending_len(), 4);
        assert_eq!(parser.feed(b"\n"), vec![data("abc")]);
        assert_eq!(parser.pending_len(), 0);
    }
}
