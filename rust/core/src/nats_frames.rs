//! The NATS server-to-client byte stream cut into frames, in front of a general client.
//!
//! Why: in a Python NATS client, parsing each `MSG` frame (a regular expression, a dict,
//! an integer parse, a copy, a coroutine) costs more than routing the message. Here the
//! stream is cut once, in order, and only two kinds of frame come out:
//!
//! - [`Frame::Msg`]: a `MSG` or `HMSG` on a subscription id the caller routes itself
//!   ([`FrameReader::route`]), with its subject and payload borrowed from the buffer (an
//!   `HMSG`'s headers are skipped: the routed subscriptions carry payloads only, such as
//!   JetStream publishes with their `Nats-Msg-Id`);
//! - [`Frame::Other`]: any other complete frame, byte for byte (`INFO`, `PING`, `PONG`,
//!   `+OK`, `-ERR`, a message on an id not routed here, anything unknown), for the
//!   general client's own parser, which then only ever sees whole frames.
//!
//! A frame split across reads waits in the buffer for the rest. Bounds: a control line
//! longer than [`MAX_CONTROL_LINE`] without its end, and a payload larger than the
//! reader's `max_payload`, are errors (the connection is then unusable), so a broken or
//! hostile peer cannot grow the buffer without limit.

use std::collections::HashSet;
use std::fmt;

/// The longest control line accepted (the server's default limit).
pub const MAX_CONTROL_LINE: usize = 4096;

/// One frame of the stream (see the module docs).
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A message on a routed subscription (without its headers).
    Msg {
        sid: u64,
        subject: &'a [u8],
        reply: &'a [u8],
        payload: &'a [u8],
    },
    /// Any other whole frame, for the general parser.
    Other(&'a [u8]),
}

/// Why the stream cannot be read further.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// No line end within [`MAX_CONTROL_LINE`] bytes.
    LineTooLong,
    /// A `MSG` or `HMSG` line whose fields cannot be read.
    Malformed(String),
    /// A payload larger than the reader's limit.
    TooLarge { size: usize, limit: usize },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::LineTooLong => {
                write!(f, "NATS control line longer than {MAX_CONTROL_LINE} bytes")
            }
            FrameError::Malformed(line) => write!(f, "malformed NATS frame: {line:?}"),
            FrameError::TooLarge { size, limit } => {
                write!(
                    f,
                    "NATS payload of {size} bytes exceeds the limit of {limit}"
                )
            }
        }
    }
}

impl std::error::Error for FrameError {}

/// Cuts a NATS byte stream into frames (see the module docs).
#[derive(Debug)]
pub struct FrameReader {
    buf: Vec<u8>,
    routed: HashSet<u64>,
    max_payload: usize,
}

/// Where the next frame ends, and what it is.
enum Cut {
    Msg {
        end: usize,
        sid: u64,
        subject: (usize, usize),
        reply: (usize, usize),
        payload: (usize, usize),
    },
    Other(usize),
    Incomplete,
}

impl FrameReader {
    /// A reader refusing payloads over `max_payload` bytes.
    pub fn new(max_payload: usize) -> Self {
        FrameReader {
            buf: Vec::new(),
            routed: HashSet::new(),
            max_payload,
        }
    }

    /// `MSG` frames on `sid` come out as [`Frame::Msg`] from now on.
    pub fn route(&mut self, sid: u64) {
        self.routed.insert(sid);
    }

    /// `MSG` frames on `sid` go to the general parser again.
    pub fn unroute(&mut self, sid: u64) {
        self.routed.remove(&sid);
    }

    /// Forgets a partial frame (a new connection starts a new stream).
    pub fn reset(&mut self) {
        self.buf.clear();
    }

    /// Bytes held of a frame not yet complete.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Reads `data` after what is held, calling `each` with every complete frame in order.
    /// After an error the reader holds nothing; the stream is not to be read further.
    pub fn feed(&mut self, data: &[u8], mut each: impl FnMut(Frame<'_>)) -> Result<(), FrameError> {
        // The common case, nothing held: frames are read from `data` itself, and only the
        // incomplete tail is copied.
        let mut held = std::mem::take(&mut self.buf);
        let consumed;
        let result;
        if held.is_empty() {
            (consumed, result) = self.cut_all(data, &mut each);
            if result.is_ok() {
                held.extend_from_slice(&data[consumed..]);
            }
        } else {
            held.extend_from_slice(data);
            (consumed, result) = self.cut_all(&held, &mut each);
            held.drain(..consumed);
        }
        if result.is_ok() {
            self.buf = held;
        }
        result
    }

    fn cut_all(
        &self,
        bytes: &[u8],
        each: &mut impl FnMut(Frame<'_>),
    ) -> (usize, Result<(), FrameError>) {
        let mut at = 0;
        while at < bytes.len() {
            match self.cut(&bytes[at..]) {
                Ok(Cut::Incomplete) => break,
                Ok(Cut::Other(end)) => {
                    each(Frame::Other(&bytes[at..at + end]));
                    at += end;
                }
                Ok(Cut::Msg {
                    end,
                    sid,
                    subject,
                    reply,
                    payload,
                }) => {
                    let frame = &bytes[at..at + end];
                    each(Frame::Msg {
                        sid,
                        subject: &frame[subject.0..subject.1],
                        reply: &frame[reply.0..reply.1],
                        payload: &frame[payload.0..payload.1],
                    });
                    at += end;
                }
                Err(err) => return (at, Err(err)),
            }
        }
        (at, Ok(()))
    }

    fn cut(&self, bytes: &[u8]) -> Result<Cut, FrameError> {
        let Some(line_end) = find_crlf(bytes) else {
            return if bytes.len() > MAX_CONTROL_LINE {
                Err(FrameError::LineTooLong)
            } else {
                Ok(Cut::Incomplete)
            };
        };
        if line_end > MAX_CONTROL_LINE {
            return Err(FrameError::LineTooLong);
        }
        let line = &bytes[..line_end];
        let after_line = line_end + 2;
        let headers = line.starts_with(b"HMSG ") || line.starts_with(b"HMSG\t");
        if !(headers || line.starts_with(b"MSG ") || line.starts_with(b"MSG\t")) {
            return Ok(Cut::Other(after_line));
        }
        let fields = Fields::of(line);
        let malformed = || FrameError::Malformed(String::from_utf8_lossy(line).into_owned());
        // MSG <subject> <sid> [reply] <size>; HMSG <subject> <sid> [reply] <hsize> <size>
        let count = fields.len();
        let least = if headers { 5 } else { 4 };
        if count != least && count != least + 1 {
            return Err(malformed());
        }
        let size = parse_number(fields.text(line, count - 1)).ok_or_else(malformed)?;
        if size > self.max_payload {
            return Err(FrameError::TooLarge {
                size,
                limit: self.max_payload,
            });
        }
        let sid = parse_number(fields.text(line, 2)).ok_or_else(malformed)? as u64;
        let header_size = if headers {
            let header_size = parse_number(fields.text(line, count - 2)).ok_or_else(malformed)?;
            if header_size > size {
                return Err(malformed());
            }
            header_size
        } else {
            0
        };
        let end = after_line + size + 2;
        if bytes.len() < end {
            return Ok(Cut::Incomplete);
        }
        if &bytes[end - 2..end] != b"\r\n" {
            return Err(malformed());
        }
        if !self.routed.contains(&sid) {
            return Ok(Cut::Other(end));
        }
        let reply = if count == least + 1 {
            fields.span(3)
        } else {
            (line_end, line_end)
        };
        Ok(Cut::Msg {
            end,
            sid,
            subject: fields.span(1),
            reply,
            payload: (after_line + header_size, after_line + size),
        })
    }
}

/// The whitespace-separated fields of a control line, as spans (at most 6 are kept: a
/// line with more is malformed anyway).
struct Fields {
    spans: [(usize, usize); 7],
    count: usize,
}

impl Fields {
    fn of(line: &[u8]) -> Fields {
        let mut spans = [(0, 0); 7];
        let mut count = 0;
        let mut at = 0;
        while at < line.len() {
            while at < line.len() && (line[at] == b' ' || line[at] == b'\t') {
                at += 1;
            }
            if at == line.len() {
                break;
            }
            let start = at;
            while at < line.len() && line[at] != b' ' && line[at] != b'\t' {
                at += 1;
            }
            if count < spans.len() {
                spans[count] = (start, at);
            }
            count += 1;
        }
        Fields { spans, count }
    }

    fn len(&self) -> usize {
        self.count
    }

    fn span(&self, n: usize) -> (usize, usize) {
        self.spans[n]
    }

    fn text<'a>(&self, line: &'a [u8], n: usize) -> &'a [u8] {
        let (start, end) = self.spans[n];
        &line[start..end]
    }
}

fn find_crlf(bytes: &[u8]) -> Option<usize> {
    let limit = bytes.len().min(MAX_CONTROL_LINE + 2);
    let window = &bytes[..limit];
    let mut from = 0;
    while let Some(offset) = window[from..].iter().position(|&b| b == b'\r') {
        let at = from + offset;
        if at + 1 < window.len() {
            if window[at + 1] == b'\n' {
                return Some(at);
            }
        } else {
            return None;
        }
        from = at + 1;
    }
    None
}

fn parse_number(text: &[u8]) -> Option<usize> {
    if text.is_empty() || text.len() > 19 {
        return None;
    }
    let mut value: usize = 0;
    for &b in text {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(usize::from(b - b'0'))?;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Eq)]
    enum Owned {
        Msg(u64, Vec<u8>, Vec<u8>, Vec<u8>),
        Other(Vec<u8>),
    }

    fn read(reader: &mut FrameReader, data: &[u8]) -> Result<Vec<Owned>, FrameError> {
        let mut out = Vec::new();
        reader.feed(data, |frame| {
            out.push(match frame {
                Frame::Msg {
                    sid,
                    subject,
                    reply,
                    payload,
                } => Owned::Msg(sid, subject.to_vec(), reply.to_vec(), payload.to_vec()),
                Frame::Other(bytes) => Owned::Other(bytes.to_vec()),
            })
        })?;
        Ok(out)
    }

    fn msg(sid: u64, subject: &str, reply: &str, payload: &str) -> Owned {
        Owned::Msg(sid, subject.into(), reply.into(), payload.into())
    }

    const STREAM: &[u8] = b"INFO {\"a\":1}\r\nMSG events.x 1 5\r\nhello\r\nPING\r\n\
MSG events.y 2 inbox.1 2\r\nhi\r\nMSG events.z 3 0\r\n\r\n\
HMSG events.h 1 12 14\r\nNATS/1.0\r\n\r\nab\r\n+OK\r\n-ERR 'x'\r\n";

    fn expected() -> Vec<Owned> {
        vec![
            Owned::Other(b"INFO {\"a\":1}\r\n".to_vec()),
            msg(1, "events.x", "", "hello"),
            Owned::Other(b"PING\r\n".to_vec()),
            msg(2, "events.y", "inbox.1", "hi"),
            Owned::Other(b"MSG events.z 3 0\r\n\r\n".to_vec()), // sid 3 is not routed
            msg(1, "events.h", "", "ab"),                       // headers skipped
            Owned::Other(b"+OK\r\n".to_vec()),
            Owned::Other(b"-ERR 'x'\r\n".to_vec()),
        ]
    }

    fn routed() -> FrameReader {
        let mut reader = FrameReader::new(1 << 20);
        reader.route(1);
        reader.route(2);
        reader
    }

    #[test]
    fn a_stream_comes_out_as_routed_messages_and_whole_other_frames() {
        assert_eq!(read(&mut routed(), STREAM).unwrap(), expected());
    }

    #[test]
    fn every_split_of_the_stream_gives_the_same_frames() {
        for cut in 0..=STREAM.len() {
            let mut reader = routed();
            let mut got = read(&mut reader, &STREAM[..cut]).unwrap();
            got.extend(read(&mut reader, &STREAM[cut..]).unwrap());
            assert_eq!(got, expected(), "split at {cut}");
            assert_eq!(reader.pending(), 0);
        }
        let mut reader = routed();
        let mut got = Vec::new();
        for byte in STREAM.chunks(1) {
            got.extend(read(&mut reader, byte).unwrap());
        }
        assert_eq!(got, expected());
    }

    #[test]
    fn unrouted_ids_go_to_the_general_parser() {
        let mut reader = routed();
        reader.unroute(1);
        let got = read(
            &mut reader,
            b"MSG a 1 1\r\nx\r\nHMSG a 1 r 2 3\r\n\r\nx\r\n",
        )
        .unwrap();
        let frames = [&b"MSG a 1 1\r\nx\r\n"[..], b"HMSG a 1 r 2 3\r\n\r\nx\r\n"];
        assert_eq!(got, frames.map(|f| Owned::Other(f.to_vec())));
        reader.route(1);
        let got = read(&mut reader, b"HMSG a 1 r 2 3\r\n\r\nx\r\n").unwrap();
        assert_eq!(got, vec![msg(1, "a", "r", "x")]);
    }

    #[test]
    fn a_payload_may_hold_line_ends() {
        let got = read(&mut routed(), b"MSG a 1 4\r\n\r\n\r\n\r\n").unwrap();
        assert_eq!(got, vec![msg(1, "a", "", "\r\n\r\n")]);
    }

    #[test]
    fn malformed_and_oversized_frames_are_errors() {
        for bad in [
            &b"MSG a 1\r\n"[..],
            b"MSG a x 1\r\nx\r\n",
            b"MSG a 1 -1\r\n",
            b"MSG a 1 2 3 4\r\n",
            b"MSG a 1 1\r\nxy\r\n",
            b"HMSG a 1 5 2\r\nxx\r\n",
            b"MSG a 1 99999999999999999999\r\n",
        ] {
            assert!(
                matches!(read(&mut routed(), bad), Err(FrameError::Malformed(_))),
                "{bad:?}"
            );
        }
        let mut small = FrameReader::new(4);
        assert_eq!(
            read(&mut small, b"MSG a 1 5\r\n"),
            Err(FrameError::TooLarge { size: 5, limit: 4 })
        );
        let long = vec![b'x'; MAX_CONTROL_LINE + 1];
        assert_eq!(read(&mut routed(), &long), Err(FrameError::LineTooLong));
        let mut reader = routed();
        read(&mut reader, &long[..MAX_CONTROL_LINE]).unwrap(); // may still end
        assert_eq!(read(&mut reader, b"xx"), Err(FrameError::LineTooLong));
        assert_eq!(reader.pending(), 0);
    }
}
