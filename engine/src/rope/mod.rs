//! [`Rope`]: a text as a persistent tree of chunks, so that the engine's per-round-trip work is
//! the size of the edit, not of the document.
//!
//! What a keystroke's round trip needs from a text, and what a flat `String` charges for it:
//! a splice (moves the tail: O(n)), a copy into a shadow, a backup or a persist record (O(n)),
//! UTF-16 offsets for the delta codec (a scan: O(n)) and the protocol's CRC-32 of the whole
//! UTF-8 text (O(n)). A rope does each in O(log n) plus the edit:
//!
//! - **Chunks** (leaves) of at most [`MAX_LEAF`] bytes, cut at char boundaries, under inner
//!   nodes of at most [`MAX_CHILDREN`] children; every leaf at the same depth.
//! - **Lengths in every unit the protocol uses**, summed per node: bytes (operations), UTF-16
//!   code units (deltas on the wire), chars (the client's char positions).
//! - **CRC-32 per node, combined.** CRC-32 is linear: `crc(A‖B) = crc(A)·x^(8|B|) ⊕ crc(B)`
//!   (mod the CRC polynomial; zlib's `crc32_combine`), so a node's CRC is folded from its
//!   children's CRCs and `x^(8·len)` factors. Both are computed lazily and cached per node, so
//!   many edits between two checksums cost one pass over the changed paths.
//! - **Persistent**: nodes are shared (`Arc`) and copied on write, so a clone is O(1) and a
//!   shadow that equals the master *is* the master's tree, until one of them changes; then only
//!   the path to the change is copied.
//!
//! Invariants (checked by [`Rope::check`] in the property tests): leaves hold at most
//! `MAX_LEAF` bytes, inner nodes at most `MAX_CHILDREN` children and at least one; all leaves
//! at one depth; every node's lengths are the sums of its children's; only the root may be an
//! empty leaf. The checksum equals `crc32fast::hash` of the flat text (property tests).

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, OnceLock};

use crate::text::{utf16_len, DeltaError};

mod access;
mod crc;
#[cfg(test)]
mod tests;

pub use access::{TextEdit, TextRead};
use crc::{shift_for, Crc};

/// Most bytes in one leaf. A keystroke copies at most one leaf (when it is shared) and hashes
/// it once; larger leaves mean fewer CRC combinations per checksum.
pub const MAX_LEAF: usize = 2048;
/// A leaf below this many bytes is merged with a neighbour after an edit.
const MIN_LEAF: usize = MAX_LEAF / 4;
/// Most children of one inner node.
pub const MAX_CHILDREN: usize = 16;
/// An inner node below this many children is merged with a neighbour after an edit.
const MIN_CHILDREN: usize = MAX_CHILDREN / 4;

/// A text's length in the three units the engine counts in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Len {
    bytes: usize,
    utf16: usize,
    chars: usize,
}

impl Len {
    fn of(s: &str) -> Len {
        let (utf16, chars) = if s.is_ascii() {
            (s.len(), s.len())
        } else {
            (utf16_len(s), s.chars().count())
        };
        Len {
            bytes: s.len(),
            utf16,
            chars,
        }
    }

    fn add(self, o: Len) -> Len {
        Len {
            bytes: self.bytes + o.bytes,
            utf16: self.utf16 + o.utf16,
            chars: self.chars + o.chars,
        }
    }
}

#[derive(Debug, Clone)]
enum Body {
    Leaf(String),
    Inner(Vec<Arc<Node>>),
}

#[derive(Debug, Clone)]
struct Node {
    len: Len,
    /// Filled on first use, cleared by every change (a changed node is a fresh or unshared
    /// copy, never one another rope still sees).
    crc: OnceLock<Crc>,
    body: Body,
}

impl Node {
    fn leaf(s: String) -> Arc<Node> {
        debug_assert!(s.len() <= MAX_LEAF);
        Arc::new(Node {
            len: Len::of(&s),
            crc: OnceLock::new(),
            body: Body::Leaf(s),
        })
    }

    fn inner(children: Vec<Arc<Node>>) -> Arc<Node> {
        debug_assert!(!children.is_empty() && children.len() <= MAX_CHILDREN);
        Arc::new(Node {
            len: sum_lens(&children),
            crc: OnceLock::new(),
            body: Body::Inner(children),
        })
    }

    fn crc(&self) -> Crc {
        *self.crc.get_or_init(|| match &self.body {
            Body::Leaf(s) => Crc {
                crc: crc32fast::hash(s.as_bytes()),
                shift: shift_for(s.len()),
            },
            Body::Inner(children) => children.iter().fold(Crc::EMPTY, |acc, c| acc.then(c.crc())),
        })
    }

    /// Too small to stand alone beside a sibling: merged with one after an edit.
    fn is_small(&self) -> bool {
        match &self.body {
            Body::Leaf(s) => s.len() < MIN_LEAF,
            Body::Inner(c) => c.len() < MIN_CHILDREN,
        }
    }
}

fn sum_lens(children: &[Arc<Node>]) -> Len {
    children
        .iter()
        .fold(Len::default(), |acc, c| acc.add(c.len))
}

/// Cut `s` into leaves of at most `MAX_LEAF` bytes at char boundaries, of nearly equal sizes
/// (so none is small when there is more than one). Empty text gives no leaves.
fn leaves_of(s: &str) -> Vec<Arc<Node>> {
    let mut out = Vec::with_capacity(s.len() / MAX_LEAF + 1);
    let mut rest = s;
    while rest.len() > MAX_LEAF {
        let pieces = rest.len().div_ceil(MAX_LEAF);
        let mut cut = rest.len().div_ceil(pieces);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push(Node::leaf(rest[..cut].to_string()));
        rest = &rest[cut..];
    }
    if !rest.is_empty() {
        out.push(Node::leaf(rest.to_string()));
    }
    out
}

/// Group nodes of one height under inner nodes of nearly equal fan-out (one level up).
fn group(mut nodes: Vec<Arc<Node>>) -> Vec<Arc<Node>> {
    let groups = nodes.len().div_ceil(MAX_CHILDREN);
    let mut out = Vec::with_capacity(groups);
    for g in (1..=groups).rev() {
        let take = nodes.len().div_ceil(g);
        let rest = nodes.split_off(take);
        out.push(Node::inner(std::mem::replace(&mut nodes, rest)));
    }
    out
}

/// Two neighbours, one of them small, as one node or two balanced ones.
fn merge(a: Arc<Node>, b: Arc<Node>) -> Vec<Arc<Node>> {
    let take = |n: Arc<Node>| Arc::try_unwrap(n).unwrap_or_else(|n| (*n).clone()).body;
    match (take(a), take(b)) {
        (Body::Leaf(mut x), Body::Leaf(y)) => {
            if x.len() + y.len() <= MAX_LEAF {
                x.push_str(&y);
                vec![Node::leaf(x)]
            } else {
                x.push_str(&y);
                leaves_of(&x)
            }
        }
        (Body::Inner(mut x), Body::Inner(y)) => {
            x.extend(y);
            group(x)
        }
        _ => unreachable!("siblings are at one height"),
    }
}

/// Replace the bytes `range` of `node` by `with`; the node's replacement, at its height (none,
/// one, or several when it grew past its limits).
fn replace_in(mut node: Arc<Node>, range: Range<usize>, with: &str) -> Vec<Arc<Node>> {
    let n = Arc::make_mut(&mut node);
    n.crc = OnceLock::new();
    match &mut n.body {
        Body::Leaf(s) => {
            if s.len() - range.len() + with.len() <= MAX_LEAF {
                s.replace_range(range, with);
                if s.is_empty() {
                    return Vec::new();
                }
                n.len = Len::of(s);
                return vec![node];
            }
            let mut t = String::with_capacity(s.len() - range.len() + with.len());
            t.push_str(&s[..range.start]);
            t.push_str(with);
            t.push_str(&s[range.end..]);
            leaves_of(&t)
        }
        Body::Inner(children) => {
            // The first child holding `range.start` (the left one at a boundary), and the
            // first from there holding `range.end`.
            let mut at = 0;
            let mut i = 0;
            while at + children[i].len.bytes < range.start {
                at += children[i].len.bytes;
                i += 1;
            }
            let i_start = at;
            let mut j = i;
            while at + children[j].len.bytes < range.end {
                at += children[j].len.bytes;
                j += 1;
            }
            let j_start = at;
            // Taken out (not cloned), so an unshared child is changed in place.
            let mut old: Vec<Arc<Node>> = children.drain(i..=j).collect();
            let mut new = Vec::new();
            if i == j {
                let c = old.pop().expect("child i");
                new.extend(replace_in(
                    c,
                    range.start - i_start..range.end - i_start,
                    with,
                ));
            } else {
                let right = old.pop().expect("child j");
                let left = old.swap_remove(0);
                let left_len = left.len.bytes;
                new.extend(replace_in(left, range.start - i_start..left_len, with));
                new.extend(replace_in(right, 0..range.end - j_start, ""));
            }
            let added = new.len();
            children.splice(i..i, new);
            // Merge small nodes around the change with a neighbour.
            let mut k = i.saturating_sub(1);
            let mut hi = (i + added + 1).min(children.len());
            while k + 1 < hi {
                if children[k].is_small() || children[k + 1].is_small() {
                    let b = children.remove(k + 1);
                    let a = children.remove(k);
                    let merged = merge(a, b);
                    let m = merged.len();
                    children.splice(k..k, merged);
                    hi = hi + m - 2;
                    if m > 1 {
                        k += 1;
                    }
                } else {
                    k += 1;
                }
            }
            if children.is_empty() {
                return Vec::new();
            }
            if children.len() > MAX_CHILDREN {
                return group(std::mem::take(children));
            }
            n.len = sum_lens(children);
            vec![node]
        }
    }
}

/// The root over `nodes` (all of one height): grouped up to one node, single-child inner
/// nodes collapsed.
fn root_of(mut nodes: Vec<Arc<Node>>) -> Arc<Node> {
    while nodes.len() > 1 {
        nodes = group(nodes);
    }
    let Some(mut root) = nodes.pop() else {
        return Node::leaf(String::new());
    };
    while let Body::Inner(c) = &root.body {
        if c.len() != 1 {
            break;
        }
        root = c[0].clone();
    }
    root
}

/// A text as a persistent tree of chunks (see the module docs).
#[derive(Clone)]
pub struct Rope {
    root: Arc<Node>,
}

impl Default for Rope {
    fn default() -> Self {
        Rope::new()
    }
}

impl Rope {
    /// The empty text.
    pub fn new() -> Rope {
        Rope {
            root: Node::leaf(String::new()),
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.root.len.bytes
    }

    /// True for the empty text.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Length in UTF-16 code units (the wire's unit).
    pub fn len_utf16(&self) -> usize {
        self.root.len.utf16
    }

    /// Length in chars.
    pub fn len_chars(&self) -> usize {
        self.root.len.chars
    }

    /// CRC-32 of the UTF-8 text (equal to `crc32fast::hash(text.as_bytes())`), from the
    /// cached CRCs of the unchanged subtrees.
    pub fn checksum(&self) -> u32 {
        self.root.crc().crc
    }

    /// True when both ropes are one tree (a clone neither side changed since): equal texts
    /// without looking at them. False says nothing.
    pub fn ptr_eq(&self, other: &Rope) -> bool {
        Arc::ptr_eq(&self.root, &other.root)
    }

    /// The leaf holding unit `pos` of `unit` (the last leaf for the end), with the lengths
    /// before it.
    fn find(&self, mut pos: usize, unit: fn(&Len) -> usize) -> (&str, Len) {
        let mut node = &*self.root;
        let mut before = Len::default();
        loop {
            match &node.body {
                Body::Leaf(s) => return (s, before),
                Body::Inner(children) => {
                    let last = children.len() - 1;
                    let mut next = &children[last];
                    for (k, c) in children.iter().enumerate() {
                        let m = unit(&c.len);
                        if pos < m || k == last {
                            next = c;
                            break;
                        }
                        pos -= m;
                        before = before.add(c.len);
                    }
                    node = next;
                }
            }
        }
    }

    /// True when byte `i` is at a char boundary (or the end).
    pub fn is_char_boundary(&self, i: usize) -> bool {
        if i > self.len() {
            return false;
        }
        let (leaf, before) = self.find(i, |l| l.bytes);
        leaf.is_char_boundary(i - before.bytes)
    }

    /// UTF-16 units before byte `i` (which must be a char boundary within the text).
    pub fn byte_to_utf16(&self, i: usize) -> usize {
        assert!(self.is_char_boundary(i), "byte {i} is not a char boundary");
        let (leaf, before) = self.find(i, |l| l.bytes);
        before.utf16 + utf16_len(&leaf[..i - before.bytes])
    }

    /// The byte offset `units` UTF-16 units after byte `from`, with the errors of
    /// `text::advance_utf16` on the flat text (same values).
    pub fn advance_utf16(&self, from: usize, units: usize) -> Result<usize, DeltaError> {
        let target = self.byte_to_utf16(from) + units;
        if target > self.len_utf16() {
            return Err(DeltaError::DoesNotFit {
                covered: target,
                len: self.len_utf16(),
            });
        }
        let (leaf, before) = self.find(target, |l| l.utf16);
        // Within one leaf (ASCII runs skipped a word at a time); the target is in it, so only
        // a split surrogate pair can fail, reported at the target like the flat walk does.
        match crate::text::advance_utf16(leaf, 0, target - before.utf16) {
            Ok(b) => Ok(before.bytes + b),
            Err(_) => Err(DeltaError::SplitsSurrogate(target)),
        }
    }

    /// Byte offset of char `c` (`None` past the end).
    pub fn char_to_byte(&self, c: usize) -> Option<usize> {
        if c > self.len_chars() {
            return None;
        }
        let (leaf, before) = self.find(c, |l| l.chars);
        let local = c - before.chars;
        let b = leaf
            .char_indices()
            .nth(local)
            .map_or(leaf.len(), |(b, _)| b);
        Some(before.bytes + b)
    }

    /// Replace the bytes `range` by `with`. Panics when the range is out of bounds or not on
    /// char boundaries (callers check: operations carry `OpError`s for that).
    pub fn replace(&mut self, range: Range<usize>, with: &str) {
        assert!(
            range.start <= range.end
                && self.is_char_boundary(range.start)
                && self.is_char_boundary(range.end),
            "rope replace: bad range {range:?} of {}",
            self.len()
        );
        if range.is_empty() && with.is_empty() {
            return;
        }
        let root = std::mem::replace(&mut self.root, Node::leaf(String::new()));
        self.root = root_of(replace_in(root, range, with));
    }

    /// The chunks of the text, in order.
    pub fn chunks(&self) -> Chunks<'_> {
        self.chunks_in(0..self.len())
    }

    /// The chunks of the bytes `range` (on char boundaries), in order.
    pub fn chunks_in(&self, range: Range<usize>) -> Chunks<'_> {
        assert!(range.start <= range.end && range.end <= self.len());
        let mut stack = Vec::new();
        let mut node = &*self.root;
        let mut skip = range.start;
        // Down to the leaf holding the start, keeping the siblings after each step.
        let first = loop {
            match &node.body {
                Body::Leaf(s) => break s.as_str(),
                Body::Inner(children) => {
                    let mut it = children.iter();
                    let mut next = None;
                    for c in it.by_ref() {
                        if skip < c.len.bytes || skip == 0 {
                            next = Some(c);
                            break;
                        }
                        skip -= c.len.bytes;
                    }
                    match next {
                        Some(c) => {
                            stack.push(it);
                            node = c;
                        }
                        // The start is the end of the text.
                        None => break "",
                    }
                }
            }
        };
        let first = first.get(skip.min(first.len())..).unwrap_or("");
        Chunks {
            stack,
            first: Some(first),
            left: range.len(),
        }
    }

    /// The bytes `range` as a string (on char boundaries).
    pub fn slice(&self, range: Range<usize>) -> Cow<'_, str> {
        let mut it = self.chunks_in(range.clone());
        match (it.next(), it.next()) {
            (None, _) => Cow::Borrowed(""),
            (Some(a), None) => Cow::Borrowed(a),
            (Some(a), Some(b)) => {
                let mut s = String::with_capacity(range.len());
                s.push_str(a);
                s.push_str(b);
                it.for_each(|c| s.push_str(c));
                Cow::Owned(s)
            }
        }
    }

    /// The whole text, flat: borrowed when it is one chunk, else copied (O(n): for diffs,
    /// text merges and displays, never on a keystroke's path).
    pub fn flat(&self) -> Cow<'_, str> {
        self.slice(0..self.len())
    }

    /// Check the structural invariants (module docs); for tests and debug assertions.
    pub fn check(&self) -> Result<(), String> {
        fn walk(n: &Node, root: bool) -> Result<(usize, Len), String> {
            match &n.body {
                Body::Leaf(s) => {
                    if s.len() > MAX_LEAF || (s.is_empty() && !root) {
                        return Err(format!("leaf of {} bytes", s.len()));
                    }
                    if n.len != Len::of(s) {
                        return Err("leaf length wrong".into());
                    }
                    Ok((0, n.len))
                }
                Body::Inner(c) => {
                    if c.is_empty() || c.len() > MAX_CHILDREN {
                        return Err(format!("inner node of {} children", c.len()));
                    }
                    let mut depth = None;
                    let mut sum = Len::default();
                    for child in c {
                        let (d, l) = walk(child, false)?;
                        if depth.is_some_and(|x| x != d) {
                            return Err("leaves at different depths".into());
                        }
                        depth = Some(d);
                        sum = sum.add(l);
                    }
                    if sum != n.len {
                        return Err("inner length is not the sum of its children".into());
                    }
                    Ok((depth.unwrap_or(0) + 1, sum))
                }
            }
        }
        walk(&self.root, true).map(|_| ())
    }

    /// Height of the tree (0 for a single leaf); for tests and figures.
    pub fn height(&self) -> usize {
        let mut h = 0;
        let mut n = &*self.root;
        while let Body::Inner(c) = &n.body {
            n = &c[0];
            h += 1;
        }
        h
    }
}

/// The chunks of a rope's range, in order ([`Rope::chunks_in`]).
pub struct Chunks<'a> {
    stack: Vec<std::slice::Iter<'a, Arc<Node>>>,
    first: Option<&'a str>,
    /// Bytes of the range not yet returned.
    left: usize,
}

impl<'a> Iterator for Chunks<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.left == 0 {
            return None;
        }
        let chunk = match self.first.take() {
            Some(s) => s,
            None => loop {
                let top = self.stack.last_mut()?;
                match top.next() {
                    None => {
                        self.stack.pop();
                    }
                    Some(n) => match &n.body {
                        Body::Leaf(s) => break s.as_str(),
                        Body::Inner(c) => self.stack.push(c.iter()),
                    },
                }
            },
        };
        let chunk = &chunk[..chunk.len().min(self.left)];
        self.left -= chunk.len();
        if chunk.is_empty() {
            return self.next();
        }
        Some(chunk)
    }
}

impl From<&str> for Rope {
    fn from(s: &str) -> Rope {
        Rope {
            root: root_of(leaves_of(s)),
        }
    }
}

impl From<String> for Rope {
    fn from(s: String) -> Rope {
        if s.len() <= MAX_LEAF {
            return Rope {
                root: Node::leaf(s),
            };
        }
        Rope::from(s.as_str())
    }
}

impl From<&Rope> for String {
    fn from(r: &Rope) -> String {
        let mut s = String::with_capacity(r.len());
        r.chunks().for_each(|c| s.push_str(c));
        s
    }
}

impl fmt::Display for Rope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.chunks().try_for_each(|c| f.write_str(c))
    }
}

impl fmt::Debug for Rope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&String::from(self), f)
    }
}

impl PartialEq for Rope {
    fn eq(&self, other: &Rope) -> bool {
        if self.ptr_eq(other) {
            return true;
        }
        if self.root.len != other.root.len {
            return false;
        }
        // Bytes, not strs: one rope's chunk boundaries may fall inside the other's chars.
        let (mut a, mut b) = (self.chunks(), other.chunks());
        let (mut x, mut y): (&[u8], &[u8]) = (&[], &[]);
        loop {
            if x.is_empty() {
                match a.next() {
                    Some(c) => x = c.as_bytes(),
                    None => return y.is_empty() && b.next().is_none(),
                }
            }
            if y.is_empty() {
                match b.next() {
                    Some(c) => y = c.as_bytes(),
                    None => return false,
                }
            }
            let n = x.len().min(y.len());
            if x[..n] != y[..n] {
                return false;
            }
            (x, y) = (&x[n..], &y[n..]);
        }
    }
}

impl Eq for Rope {}

impl PartialEq<str> for Rope {
    fn eq(&self, other: &str) -> bool {
        if self.len() != other.len() {
            return false;
        }
        let mut at = 0;
        self.chunks().all(|c| {
            let same = other.as_bytes()[at..at + c.len()] == *c.as_bytes();
            at += c.len();
            same
        })
    }
}

impl PartialEq<&str> for Rope {
    fn eq(&self, other: &&str) -> bool {
        *self == **other
    }
}

impl PartialEq<String> for Rope {
    fn eq(&self, other: &String) -> bool {
        *self == **other
    }
}

impl PartialEq<Rope> for str {
    fn eq(&self, other: &Rope) -> bool {
        *other == *self
    }
}

impl PartialEq<Rope> for &str {
    fn eq(&self, other: &Rope) -> bool {
        *other == **self
    }
}

impl PartialEq<Rope> for String {
    fn eq(&self, other: &Rope) -> bool {
        *other == **self
    }
}
