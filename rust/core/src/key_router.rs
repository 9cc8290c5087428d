//! Keyed fan-out: route raw JSON messages to the position of their key in a fixed key
//! list, by one top-level string field (coder's per-workspace dispatcher, keyed by
//! `workspace_name`).
//!
//! Routing decides only where a message goes; reading the field is the JSON scanner's job
//! ([`crate::json_scan::key_of`]), which validates the whole message, so a message routed
//! here is one the consumer can decode. A batch is grouped by key in one pass and a counting
//! sort, and is handed back as positions, never copies: the bindings return the caller's
//! own message objects.

use std::collections::HashMap;

use foldhash::fast::RandomState;

use crate::json_scan::key_of;

/// Where one message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// To the key at this position in the router's key list.
    Key(usize),
    /// Well-formed, but its key is not one of the router's.
    Unknown,
    /// Not a JSON object, or the field is missing or not a string.
    Malformed,
}

/// Routes messages to the position of their key in a fixed key list.
#[derive(Debug, Clone)]
pub struct KeyRouter {
    positions: HashMap<Box<str>, usize, RandomState>,
    field: Box<str>,
}

impl KeyRouter {
    /// A router over `keys` (a repeated key keeps its first position) by `field`.
    pub fn new<'k>(keys: impl IntoIterator<Item = &'k str>, field: &str) -> Self {
        let mut positions = HashMap::with_hasher(RandomState::default());
        for (at, key) in keys.into_iter().enumerate() {
            positions.entry(key.into()).or_insert(at);
        }
        Self {
            positions,
            field: field.into(),
        }
    }

    pub fn field(&self) -> &str {
        &self.field
    }

    /// Keys routed to (distinct).
    pub fn len(&self) -> usize {
        self.positions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    pub fn route(&self, message: &[u8]) -> Route {
        self.route_key(key_of(message, &self.field).as_deref())
    }

    /// Where a message whose key field reads `key` goes (`None`: malformed).
    pub fn route_key(&self, key: Option<&str>) -> Route {
        match key {
            Some(key) => self
                .positions
                .get(key)
                .map_or(Route::Unknown, |&at| Route::Key(at)),
            None => Route::Malformed,
        }
    }

    /// Routes a batch: the positions of its messages grouped by key, each group in batch
    /// order and the groups in the order their keys first appear.
    pub fn route_batch<'m>(&self, messages: impl IntoIterator<Item = &'m [u8]>) -> RoutedBatch {
        self.route_batch_by(messages, |message| self.route(message))
    }

    /// `route_batch` with the route of each message found by `route_of`: a caller that
    /// reads other fields of each message in the same scan passes its own (it must read
    /// the key as [`key_of`] does and route it by [`KeyRouter::route_key`]).
    pub fn route_batch_by<'m>(
        &self,
        messages: impl IntoIterator<Item = &'m [u8]>,
        mut route_of: impl FnMut(&'m [u8]) -> Route,
    ) -> RoutedBatch {
        const NO_GROUP: usize = usize::MAX;
        let mut batch = RoutedBatch::default();
        let mut group_of: HashMap<usize, usize, RandomState> =
            HashMap::with_hasher(RandomState::default());
        let mut counts: Vec<usize> = Vec::new();
        let mut assigned: Vec<usize> = Vec::new();
        // Consecutive messages often share a key: skip the lookup for a repeat.
        let mut last = (NO_GROUP, NO_GROUP);
        for (at, message) in messages.into_iter().enumerate() {
            let group = match route_of(message) {
                Route::Key(key) if key == last.0 => last.1,
                Route::Key(key) => {
                    let group = *group_of.entry(key).or_insert_with(|| {
                        batch.groups.push(Group { key, end: 0 });
                        counts.push(0);
                        counts.len() - 1
                    });
                    last = (key, group);
                    group
                }
                Route::Unknown => {
                    batch.unknown.push(at);
                    NO_GROUP
                }
                Route::Malformed => {
                    batch.malformed.push(at);
                    NO_GROUP
                }
            };
            if group != NO_GROUP {
                counts[group] += 1;
            }
            assigned.push(group);
        }
        // A counting sort: each group's messages become one run of `order`.
        let mut next = Vec::with_capacity(counts.len());
        let mut end = 0;
        for (group, count) in batch.groups.iter_mut().zip(&counts) {
            next.push(end);
            end += count;
            group.end = end;
        }
        batch.order = vec![0; end];
        for (at, &group) in assigned.iter().enumerate() {
            if group != NO_GROUP {
                batch.order[next[group]] = at;
                next[group] += 1;
            }
        }
        batch
    }
}

/// One key's share of a routed batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Group {
    /// The key's position in the router's key list.
    key: usize,
    /// Where the group's run of [`RoutedBatch::order`] ends (the previous group's end is
    /// where it starts).
    end: usize,
}

/// What [`KeyRouter::route_batch`] makes of a batch: message positions, never copies.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RoutedBatch {
    groups: Vec<Group>,
    order: Vec<usize>,
    /// Well-formed messages whose key is not the router's, in batch order.
    pub unknown: Vec<usize>,
    /// Messages that are not a JSON object with a string key field, in batch order.
    pub malformed: Vec<usize>,
}

impl RoutedBatch {
    /// Each key that received messages, with their positions in batch order.
    pub fn groups(&self) -> impl ExactSizeIterator<Item = (usize, &[usize])> + '_ {
        let mut start = 0;
        self.groups.iter().map(move |group| {
            let run = &self.order[start..group.end];
            start = group.end;
            (group.key, run)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_group_by_key_in_order_of_first_appearance() {
        let router = KeyRouter::new(["a", "b", "c"], "k");
        let batch: [&[u8]; 7] = [
            br#"{"k":"b"}"#,
            br#"{"k":"a"}"#,
            b"nope",
            br#"{"k":"b"}"#,
            br#"{"k":"z"}"#,
            br#"{"k":"b"}"#,
            br#"{"k":"a"}"#,
        ];
        let routed = router.route_batch(batch);
        let groups: Vec<(usize, Vec<usize>)> = routed
            .groups()
            .map(|(key, at)| (key, at.to_vec()))
            .collect();
        assert_eq!(groups, [(1, vec![0, 3, 5]), (0, vec![1, 6])]);
        assert_eq!(routed.unknown, [4]);
        assert_eq!(routed.malformed, [2]);
        assert_eq!(router.route_batch([]).groups().len(), 0);
    }

    #[test]
    fn routes_by_position() {
        let router = KeyRouter::new(["a", "b", "a"], "k");
        assert_eq!(router.len(), 2);
        assert_eq!(router.route(br#"{"k":"b"}"#), Route::Key(1));
        assert_eq!(router.route(br#"{"k":"a"}"#), Route::Key(0));
        assert_eq!(router.route(br#"{"k":"z"}"#), Route::Unknown);
        assert_eq!(router.route(b"nope"), Route::Malformed);
    }
}
