//! Where every key and value of a YAML document sits: a key path → position
//! index built from a position-aware parse (yaml-rust2's marked events).
//!
//! serde gives us typed values without positions; this index lets semantic
//! errors ("keep above max_keep") point at the offending key's line and
//! column. It is only a locator: if this parser disagrees with serde's on
//! some exotic input, lookups fall back to the nearest known ancestor.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
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

/// Positions of keys and values by path.
#[derive(Debug, Default)]
pub struct PositionIndex {
    /// Position of the key naming the node (for sequence items: the item).
    keys: HashMap<Path, Pos>,
    /// Position of the node's value.
    values: HashMap<Path, Pos>,
}

impl PositionIndex {
    /// Index `source`. Never fails: an unparsable document gives an empty index.
    pub fn build(source: &str) -> PositionIndex {
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(source);
        if parser.load(&mut builder, false).is_err() {
            // Keep whatever was indexed before the error.
        }
        builder.index
    }

    /// Where the key of `path` is written (falls back to the nearest ancestor).
    pub fn key(&self, path: &[Seg]) -> Pos {
        self.lookup(&self.keys, path)
    }

    /// Where the value of `path` is written (falls back to its key, then the
    /// nearest ancestor).
    pub fn value(&self, path: &[Seg]) -> Pos {
        if let Some(p) = self.values.get(path) {
            return *p;
        }
        self.key(path)
    }

    fn lookup(&self, map: &HashMap<Path, Pos>, path: &[Seg]) -> Pos {
        let mut len = path.len();
        loop {
            if let Some(p) = map.get(&path[..len]) {
                return *p;
            }
            if let Some(p) = self.values.get(&path[..len]) {
                return *p;
            }
            if len == 0 {
                return Pos { line: 1, col: 1 };
            }
            len -= 1;
        }
    }
}

/// What a container on the stack is waiting for.
#[derive(Debug)]
enum Frame {
    /// A mapping: `pending` holds the key just read, waiting for its value.
    Map { pending: Option<(String, Pos)> },
    /// A sequence: the index of the next item.
    Seq { next: usize },
}

#[derive(Default)]
struct Builder {
    index: PositionIndex,
    stack: Vec<Frame>,
    path: Path,
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
    /// path of the node, if it is a value (not a mapping key).
    fn node(&mut self, pos: Pos, scalar: Option<&str>) -> Option<Path> {
        match self.stack.last_mut() {
            None => {
                self.index.values.insert(Vec::new(), pos);
                Some(Vec::new())
            }
            Some(Frame::Seq { next }) => {
                let mut p = self.path.clone();
                p.push(Seg::Index(*next));
                *next += 1;
                self.index.keys.insert(p.clone(), pos);
                self.index.values.insert(p.clone(), pos);
                Some(p)
            }
            Some(Frame::Map { pending }) => match pending.take() {
                None => {
                    // This node is a key. Complex (non-scalar) keys are not
                    // indexed; they are rejected by the parser anyway.
                    *pending = Some((scalar.unwrap_or("").to_string(), pos));
                    None
                }
                Some((key, key_pos)) => {
                    let mut p = self.path.clone();
                    p.push(Seg::Key(key));
                    // First occurrence wins: duplicate keys are an error the
                    // deserializer reports.
                    self.index.keys.entry(p.clone()).or_insert(key_pos);
                    self.index.values.entry(p.clone()).or_insert(pos);
                    Some(p)
                }
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = Self::pos(mark);
        match ev {
            Event::Scalar(ref value, ..) => {
                self.node(pos, Some(value));
            }
            Event::Alias(_) => {
                self.node(pos, None);
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let is_map = matches!(ev, Event::MappingStart(..));
                match self.node(pos, None) {
                    Some(p) => self.path = p,
                    // A container used as a mapping key: index its contents
                    // under a placeholder path nobody looks up.
                    None => self.path.push(Seg::Key(String::new())),
                }
                self.stack.push(if is_map {
                    Frame::Map { pending: None }
                } else {
                    Frame::Seq { next: 0 }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.path.pop();
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
}
