//! Where every key and value of a YAML document sits: a key path → position
//! index built from a position-aware parse (yaml-rust2's marked events).
//!
//! serde gives us typed values without positions; this index lets semantic
//! errors ("keep above max_keep") point at the offending key's line and
//! column. It is only a locator: if this parser disagrees with serde's on
//! some exotic input, lookups fall back to the nearest known ancestor.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};

/// Containers nested deeper than this are not indexed (a policy never nests
/// more than a few levels; this keeps pathological input linear).
const MAX_DEPTH: usize = 64;
use yaml_rust2::scanner::Marker;

/// A 1-based line and column in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// One step of a path into a YAML document.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A path from the document root, e.g. `datasets.sessions.keep`.
pub type Path = Vec<Seg>;

/// Convenience: build a path from keys and indexes.
#[macro_export]
macro_rules! ypath {
    ($($seg:expr),* $(,)?) => {{
        let p: $crate::policy::position::Path =
            vec![$($crate::policy::position::IntoSeg::into_seg($seg)),*];
        p
    }};
}

/// Anything that can be one step of a path.
pub trait IntoSeg {
    fn into_seg(self) -> Seg;
}
impl IntoSeg for &str {
    fn into_seg(self) -> Seg {
        Seg::Key(self.to_string())
    }
}
impl IntoSeg for &String {
    fn into_seg(self) -> Seg {
        Seg::Key(self.clone())
    }
}
impl IntoSeg for String {
    fn into_seg(self) -> Seg {
        Seg::Key(self)
    }
}
impl IntoSeg for usize {
    fn into_seg(self) -> Seg {
        Seg::Index(self)
    }
}
impl IntoSeg for Seg {
    fn into_seg(self) -> Seg {
        self
    }
}

/// Positions of keys and values, as a tree shaped like the document.
#[derive(Debug)]
pub struct PositionIndex {
    /// `nodes[0]` is the document root.
    nodes: Vec<Node>,
}

impl Default for PositionIndex {
    fn default() -> Self {
        PositionIndex {
            nodes: vec![Node::default()],
        }
    }
}

/// One node of the document.
#[derive(Debug, Default)]
struct Node {
    /// Where the key naming the node is (for sequence items: the item).
    key: Option<Pos>,
    /// Where the node's value is.
    value: Option<Pos>,
    /// Where its key is written a second time in the same mapping.
    duplicate: Option<Pos>,
    /// Mapping entries by key, or sequence items in order.
    children: Children,
}

#[derive(Debug, Default)]
enum Children {
    #[default]
    None,
    Map(HashMap<String, usize>),
    Seq(Vec<usize>),
}

impl PositionIndex {
    /// Index `source`. Never fails: an unparsable document gives an empty index.
    pub fn build(source: &str) -> PositionIndex {
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(source);
        // Pull events one by one rather than `Parser::load`, which recurses
        // once per nesting level and so overflows the stack on deeply nested
        // input. Stop at the first error, keeping what was indexed before it.
        while let Ok((ev, mark)) = parser.next_token() {
            if matches!(ev, Event::StreamEnd) {
                break;
            }
            builder.on_event(ev, mark);
        }
        builder.index
    }

    /// The nodes along `path`, as far as it exists: `[root, …, deepest]`.
    fn walk(&self, path: &[Seg]) -> Vec<usize> {
        let mut found = vec![0];
        let mut at = 0;
        for seg in path {
            let next = match (&self.nodes[at].children, seg) {
                (Children::Map(m), Seg::Key(k)) => m.get(k).copied(),
                (Children::Seq(items), Seg::Index(i)) => items.get(*i).copied(),
                _ => None,
            };
            match next {
                Some(n) => {
                    found.push(n);
                    at = n;
                }
                None => break,
            }
        }
        found
    }

    /// The node at exactly `path`.
    fn exact(&self, path: &[Seg]) -> Option<&Node> {
        let found = self.walk(path);
        (found.len() == path.len() + 1).then(|| &self.nodes[found[path.len()]])
    }

    /// Where a key of the mapping at `path` is written a second time, if it
    /// is: `(first, second)` positions of the key.
    pub fn duplicate(&self, path: &[Seg]) -> Option<(Pos, Pos)> {
        let node = self.exact(path)?;
        Some((node.key?, node.duplicate?))
    }

    /// Where the key of `path` is written (falls back to the nearest ancestor).
    pub fn key(&self, path: &[Seg]) -> Pos {
        self.walk(path)
            .iter()
            .rev()
            .find_map(|&n| self.nodes[n].key.or(self.nodes[n].value))
            .unwrap_or(Pos { line: 1, col: 1 })
    }

    /// Where the value of `path` is written (falls back to its key, then the
    /// nearest ancestor).
    pub fn value(&self, path: &[Seg]) -> Pos {
        match self.exact(path).and_then(|n| n.value) {
            Some(p) => p,
            None => self.key(path),
        }
    }

    fn add(&mut self, node: Node) -> usize {
        self.nodes.push(node);
        self.nodes.len() - 1
    }
}

/// What a container on the stack is waiting for.
#[derive(Debug)]
enum Frame {
    /// A mapping: `pending` holds the key just read, waiting for its value.
    Map { pending: Option<(String, Pos)> },
    /// A sequence.
    Seq,
}

#[derive(Default)]
struct Builder {
    index: PositionIndex,
    /// Open containers: their frame and node (`None`: not indexed, e.g. a
    /// container used as a mapping key).
    stack: Vec<(Frame, Option<usize>)>,
    /// Containers open below `MAX_DEPTH`, not indexed.
    too_deep: usize,
}

impl Builder {
    fn pos(mark: Marker) -> Pos {
        // yaml-rust2 markers: line 1-based, column 0-based.
        Pos {
            line: mark.line(),
            col: mark.col() + 1,
        }
    }

    /// A node (scalar or container start) was read at `pos`. Returns the
    /// node, if it is a value (not a mapping key) that is indexed.
    fn node(&mut self, pos: Pos, scalar: Option<&str>) -> Option<usize> {
        let Some((frame, parent)) = self.stack.last_mut() else {
            let root = &mut self.index.nodes[0];
            root.value = Some(pos);
            return Some(0);
        };
        let parent = *parent;
        match frame {
            Frame::Seq => {
                let parent = parent?;
                let n = self.index.add(Node {
                    key: Some(pos),
                    value: Some(pos),
                    ..Node::default()
                });
                match &mut self.index.nodes[parent].children {
                    Children::Seq(items) => items.push(n),
                    other => *other = Children::Seq(vec![n]),
                }
                Some(n)
            }
            Frame::Map { pending } => match pending.take() {
                None => {
                    // This node is a key. Complex (non-scalar) keys are not
                    // indexed; they are rejected by the parser anyway.
                    *pending = Some((scalar.unwrap_or("").to_string(), pos));
                    // A block mapping's start mark is where the parser first
                    // saw its `:`; its first key is where it really starts
                    // (this matters for list items: `- reason: …`).
                    if let Some(parent) = parent {
                        let node = &mut self.index.nodes[parent];
                        for p in [&mut node.key, &mut node.value].into_iter().flatten() {
                            if (pos.line, pos.col) < (p.line, p.col) {
                                *p = pos;
                            }
                        }
                    }
                    None
                }
                Some((key, key_pos)) => {
                    let parent = parent?;
                    let existing = match &self.index.nodes[parent].children {
                        Children::Map(m) => m.get(&key).copied(),
                        _ => None,
                    };
                    // First occurrence wins: duplicate keys are an error the
                    // deserializer reports; remember where the second is.
                    if let Some(n) = existing {
                        let node = &mut self.index.nodes[n];
                        node.duplicate.get_or_insert(key_pos);
                        return Some(n);
                    }
                    // `key:` with nothing after it: the parser places the
                    // empty value at the next token, often lines below;
                    // the key is where the user has to look.
                    let empty = matches!(scalar, Some("" | "~")) && pos.line > key_pos.line;
                    let n = self.index.add(Node {
                        key: Some(key_pos),
                        value: Some(if empty { key_pos } else { pos }),
                        ..Node::default()
                    });
                    match &mut self.index.nodes[parent].children {
                        Children::Map(m) => {
                            m.insert(key, n);
                        }
                        other => *other = Children::Map(HashMap::from([(key, n)])),
                    }
                    Some(n)
                }
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = Self::pos(mark);
        if self.too_deep > 0 || self.stack.len() >= MAX_DEPTH {
            match ev {
                Event::MappingStart(..) | Event::SequenceStart(..) => self.too_deep += 1,
                Event::MappingEnd | Event::SequenceEnd if self.too_deep > 0 => self.too_deep -= 1,
                Event::MappingEnd | Event::SequenceEnd => {
                    self.stack.pop();
                }
                _ => {}
            }
            return;
        }
        match ev {
            Event::Scalar(ref value, ..) => {
                self.node(pos, Some(value));
            }
            Event::Alias(_) => {
                self.node(pos, None);
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let is_map = matches!(ev, Event::MappingStart(..));
                // `None` for a container used as a mapping key: its
                // contents are not indexed.
                let n = self.node(pos, None);
                let frame = if is_map {
                    Frame::Map { pending: None }
                } else {
                    Frame::Seq
                };
                self.stack.push((frame, n));
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_nested_keys_and_items() {
        let src = "version: 1\ndatasets:\n  a:\n    keep: 3 days\n    cols: [x, y]\nholds:\n  - reason: r\n";
        let idx = PositionIndex::build(src);
        assert_eq!(idx.key(&ypath!["version"]), Pos { line: 1, col: 1 });
        assert_eq!(
            idx.key(&ypath!["datasets", "a", "keep"]),
            Pos { line: 4, col: 5 }
        );
        assert_eq!(
            idx.value(&ypath!["datasets", "a", "keep"]),
            Pos { line: 4, col: 11 }
        );
        assert_eq!(
            idx.value(&ypath!["datasets", "a", "cols", 1]),
            Pos { line: 5, col: 15 }
        );
        assert_eq!(
            idx.key(&ypath!["holds", 0, "reason"]),
            Pos { line: 7, col: 5 }
        );
        // Unknown paths fall back to the nearest ancestor.
        assert_eq!(
            idx.key(&ypath!["datasets", "a", "nope"]),
            Pos { line: 3, col: 3 }
        );
    }

    #[test]
    fn points_items_at_their_first_key_and_empty_values_at_their_key() {
        let src = "holds:\n  - tenant: x\n    reason: r\nkeep:\nnext: 1\n";
        let idx = PositionIndex::build(src);
        assert_eq!(idx.key(&ypath!["holds", 0]), Pos { line: 2, col: 5 });
        assert_eq!(idx.value(&ypath!["keep"]), Pos { line: 4, col: 1 });
    }

    #[test]
    fn records_duplicate_keys() {
        let src = "a:\n  k: 1\n  j: 2\n  k: 3\n";
        let idx = PositionIndex::build(src);
        assert_eq!(
            idx.duplicate(&ypath!["a", "k"]),
            Some((Pos { line: 2, col: 3 }, Pos { line: 4, col: 3 }))
        );
        assert_eq!(idx.duplicate(&ypath!["a", "j"]), None);
    }
}
