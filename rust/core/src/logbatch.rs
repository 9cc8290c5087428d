//! Batched log forwarding: a bounded buffer of log entries and the writer of the
//! coordinator's `log_batch` frame.
//!
//! The buffer never blocks and never loses silently: past its capacity the overflow
//! policy drops an entry and counts it. Sending is the caller's business; the bindings
//! take batches out under their lock and send them after releasing it.

use std::collections::VecDeque;

use compact_str::CompactString;

use crate::go_json::{write_decimal, write_json_str};
use crate::go_time::WireTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

impl LogLevel {
    pub const ALL: [LogLevel; 5] = [
        LogLevel::Debug,
        LogLevel::Info,
        LogLevel::Warn,
        LogLevel::Error,
        LogLevel::Fatal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
            LogLevel::Fatal => "fatal",
        }
    }

    pub fn parse(value: &str) -> Option<LogLevel> {
        LogLevel::ALL.into_iter().find(|l| l.as_str() == value)
    }
}

/// One log entry, as when-v3's `LogEntry`. Ids and names up to 24 bytes are stored
/// inline, so buffering a typical entry allocates once, for its message.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    pub timestamp: WireTime,
    pub level: LogLevel,
    pub message: CompactString,
    pub trace_id: CompactString,
    pub span_id: CompactString,
    pub workflow_id: CompactString,
    pub action_id: CompactString,
    pub correlation_id: CompactString,
    /// Extra structured fields as one JSON object, already serialised with sorted keys;
    /// omitted when `None`.
    pub fields: Option<String>,
    pub source_file: CompactString,
    pub source_line: i64,
}

impl LogEntry {
    /// The fields, in struct order: the names Go's JSON tags give them, and the
    /// attribute names of the Python entry the bindings read.
    pub const FIELDS: [&'static str; 11] = [
        "timestamp",
        "level",
        "message",
        "trace_id",
        "span_id",
        "workflow_id",
        "action_id",
        "correlation_id",
        "fields",
        "source_file",
        "source_line",
    ];
}

/// Appends `,"key":"value"` (or without the comma first) when `value` is not empty.
fn optional_str(out: &mut String, first: &mut bool, key: &str, value: &str) {
    if !value.is_empty() {
        member(out, first, key);
        write_json_str(out, value);
    }
}

fn member(out: &mut String, first: &mut bool, key: &str) {
    if !*first {
        out.push(',');
    }
    *first = false;
    out.push('"');
    out.push_str(key);
    out.push_str("\":");
}

impl LogEntry {
    /// The entry inside a message payload. Go sets a payload by round-tripping it through
    /// a `map[string]interface{}`, so its keys come out sorted; empty fields are omitted
    /// as the struct's `omitempty` tags say.
    pub fn write_payload_json(&self, out: &mut String) {
        let first = &mut true;
        out.push('{');
        optional_str(out, first, "action_id", &self.action_id);
        optional_str(out, first, "correlation_id", &self.correlation_id);
        if let Some(fields) = &self.fields {
            member(out, first, "fields");
            out.push_str(fields);
        }
        member(out, first, "level");
        write_json_str(out, self.level.as_str());
        member(out, first, "message");
        write_json_str(out, &self.message);
        optional_str(out, first, "source_file", &self.source_file);
        if self.source_line != 0 {
            member(out, first, "source_line");
            write_decimal(out, self.source_line);
        }
        optional_str(out, first, "span_id", &self.span_id);
        member(out, first, "timestamp");
        self.timestamp.write_json(out);
        optional_str(out, first, "trace_id", &self.trace_id);
        optional_str(out, first, "workflow_id", &self.workflow_id);
        out.push('}');
    }
}

/// Writes the whole `log_batch` message: `{"id","type","timestamp","payload":{"logs":[…]}}`,
/// fields in `WSMessage`'s order.
pub fn write_batch_frame(out: &mut String, id: &str, timestamp: WireTime, entries: &[LogEntry]) {
    out.push_str("{\"id\":");
    write_json_str(out, id);
    out.push_str(",\"type\":\"log_batch\",\"timestamp\":");
    timestamp.write_json(out);
    out.push_str(",\"payload\":{\"logs\":[");
    for (at, entry) in entries.iter().enumerate() {
        if at > 0 {
            out.push(',');
        }
        entry.write_payload_json(out);
    }
    out.push_str("]}}");
}

/// Writes a single-entry `log` message, whose payload is the entry's fields flat.
pub fn write_log_frame(out: &mut String, id: &str, timestamp: WireTime, entry: &LogEntry) {
    out.push_str("{\"id\":");
    write_json_str(out, id);
    out.push_str(",\"type\":\"log\",\"timestamp\":");
    timestamp.write_json(out);
    out.push_str(",\"payload\":");
    entry.write_payload_json(out);
    out.push('}');
}

/// What happens to a new entry when the buffer is at capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogOverflow {
    /// Drop the oldest buffered entry to make room (keeps the most recent logs).
    DropOldest,
    /// Drop the new entry.
    DropNewest,
}

/// The outcome of offering one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    /// Buffered; no batch is full yet.
    Held,
    /// Buffered, and a full batch is waiting to be sent.
    BatchReady,
    /// Buffered by dropping the oldest entry, which is counted.
    DisplacedOldest,
    /// Not buffered: the buffer is full and the policy drops new entries; counted.
    Dropped,
}

/// Entries waiting to be sent, in batches of `batch_size`, at most `capacity` of them.
#[derive(Debug)]
pub struct LogBuffer {
    pending: VecDeque<LogEntry>,
    batch_size: usize,
    capacity: usize,
    overflow: LogOverflow,
    pub accepted: u64,
    pub dropped: u64,
}

impl LogBuffer {
    /// `batch_size` and `capacity` are at least 1, and the capacity at least one batch.
    pub fn new(batch_size: usize, capacity: usize, overflow: LogOverflow) -> Self {
        let batch_size = batch_size.max(1);
        Self {
            pending: VecDeque::new(),
            batch_size,
            capacity: capacity.max(batch_size),
            overflow,
            accepted: 0,
            dropped: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn offer(&mut self, entry: LogEntry) -> Offered {
        let mut outcome = Offered::Held;
        if self.pending.len() >= self.capacity {
            self.dropped += 1;
            match self.overflow {
                LogOverflow::DropNewest => return Offered::Dropped,
                LogOverflow::DropOldest => {
                    self.pending.pop_front();
                    outcome = Offered::DisplacedOldest;
                }
            }
        }
        self.pending.push_back(entry);
        self.accepted += 1;
        if outcome == Offered::Held && self.pending.len() >= self.batch_size {
            outcome = Offered::BatchReady;
        }
        outcome
    }

    /// Takes the oldest `batch_size` entries (fewer if fewer are waiting).
    pub fn take_batch(&mut self) -> Vec<LogEntry> {
        let n = self.batch_size.min(self.pending.len());
        self.pending.drain(..n).collect()
    }

    /// Whether a full batch is waiting.
    pub fn batch_ready(&self) -> bool {
        self.pending.len() >= self.batch_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(message: &str) -> LogEntry {
        LogEntry {
            timestamp: WireTime {
                unix_nanos: 1_700_000_000_000_000_001,
                offset_seconds: 0,
            },
            level: LogLevel::Info,
            message: message.into(),
            trace_id: CompactString::default(),
            span_id: CompactString::default(),
            workflow_id: CompactString::default(),
            action_id: CompactString::default(),
            correlation_id: CompactString::default(),
            fields: None,
            source_file: CompactString::default(),
            source_line: 0,
        }
    }

    #[test]
    fn payload_keys_are_sorted_and_empty_ones_omitted() {
        let mut e = entry("hi <there>");
        e.workflow_id = "wf".into();
        e.fields = Some(r#"{"a":1}"#.into());
        e.source_line = 42;
        let mut out = String::new();
        e.write_payload_json(&mut out);
        assert_eq!(
            out,
            r#"{"fields":{"a":1},"level":"info","message":"hi \u003cthere\u003e","source_line":42,"timestamp":"2023-11-14T22:13:20.000000001Z","workflow_id":"wf"}"#
        );
    }

    #[test]
    fn frame_wraps_the_batch() {
        let mut out = String::new();
        let ts = WireTime::default();
        write_batch_frame(&mut out, "msg-abc-1", ts, &[entry("a"), entry("b")]);
        assert!(out.starts_with(
            r#"{"id":"msg-abc-1","type":"log_batch","timestamp":"1970-01-01T00:00:00Z","payload":{"logs":[{"level":"info","message":"a""#
        ));
        assert!(out.ends_with(r#""timestamp":"2023-11-14T22:13:20.000000001Z"}]}}"#));
    }

    #[test]
    fn single_log_frame() {
        let mut out = String::new();
        write_log_frame(&mut out, "msg-x-2", WireTime::default(), &entry("one"));
        assert_eq!(
            out,
            r#"{"id":"msg-x-2","type":"log","timestamp":"1970-01-01T00:00:00Z","payload":{"level":"info","message":"one","timestamp":"2023-11-14T22:13:20.000000001Z"}}"#
        );
    }

    #[test]
    fn batches_and_overflow_are_counted() {
        let mut b = LogBuffer::new(2, 3, LogOverflow::DropOldest);
        assert_eq!(b.offer(entry("1")), Offered::Held);
        assert_eq!(b.offer(entry("2")), Offered::BatchReady);
        assert_eq!(b.offer(entry("3")), Offered::BatchReady);
        assert_eq!(b.offer(entry("4")), Offered::DisplacedOldest);
        assert_eq!((b.accepted, b.dropped), (4, 1));
        let batch: Vec<_> = b.take_batch().into_iter().map(|e| e.message).collect();
        assert_eq!(batch, ["2", "3"]);
        assert_eq!(b.len(), 1);

        let mut n = LogBuffer::new(1, 1, LogOverflow::DropNewest);
        assert_eq!(n.offer(entry("keep")), Offered::BatchReady);
        assert_eq!(n.offer(entry("lose")), Offered::Dropped);
        assert_eq!(n.take_batch()[0].message, "keep");
        assert_eq!(n.dropped, 1);
    }
}
