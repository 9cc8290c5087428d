//! turnout's pure Rust core: NATS subject rules, the subject index, the JSON field scanner,
//! UUID text, the key router, workflow phases, and batched log frames.
//!
//! Nothing here knows about Python; the bindings crate wraps it.

pub mod event;
pub mod go_json;
pub mod go_time;
pub mod index;
pub mod json_scan;
pub mod key_router;
pub mod logbatch;
pub mod nats_frames;
pub mod phase;
pub mod phase_manager;
pub mod ring;
pub mod subject;
pub mod uuid_text;

pub use go_json::{html_safe, write_decimal, write_go_float, write_go_json, write_json_str};
pub use go_time::{CivilTime, TimeError, WireTime, ZERO_TIME_UNIX_NANOS};
pub use index::{
    check_queue_name, Handle, IndexStats, InsertError, Matched, QueueNameError, SubjectIndex,
    MAX_CACHE_SIZE,
};
pub use json_scan::{key_of, object_fields, FieldNames, Scalar};
pub use key_router::{KeyRouter, Route, RoutedBatch};
pub use logbatch::{
    write_batch_frame, write_log_frame, LogBuffer, LogEntry, LogLevel, LogOverflow, Offered,
};
pub use nats_frames::{Frame, FrameError, FrameReader, MAX_CONTROL_LINE};
pub use phase::{Phase, PhaseError, PhaseState, PhaseTable};
pub use phase_manager::{PhaseChange, PhaseManager};
pub use ring::{Departed, Record, Ring, RingCounters, Verdict};
pub use subject::{
    check, is_subset, is_valid_literal, is_valid_subject, subject_matches, subjects_collide,
    tokens, SubjectError, SubjectKind, MAX_SUBJECT_LENGTH, MAX_TOKENS,
};
pub use uuid_text::parse_hyphenated as parse_uuid_text;
