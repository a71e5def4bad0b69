//! RFC 9162 §2.1 Merkle tree hashing, proof generation over stored perfect subtrees, and proof
//! verification (§2.1.3.2 inclusion, §2.1.4.2 consistency) with a pluggable suite hash.

use caretrail_crypto::{HashValue, Hasher, Suite};

use crate::error::{ProofError, Result};

/// Hash of a leaf: `H(0x00 ‖ entry)`.
pub fn leaf_hash(suite: Suite, entry: &[u8]) -> HashValue {
    let mut h = Hasher::new(suite);
    h.update(&[0x00]);
    h.update(entry);
    h.finalize()
}

/// Hash of an interior node: `H(0x01 ‖ left ‖ right)`, in `suite` (the children's suites are
/// not checked here; the public verifiers check them up front).
pub fn node_hash(suite: Suite, left: &HashValue, right: &HashValue) -> HashValue {
    let mut h = Hasher::new(suite);
    h.update(&[0x01]);
    h.update(left.as_bytes());
    h.update(right.as_bytes());
    h.finalize()
}

/// Root of the empty tree: `H()` (the hash of the empty string).
pub fn empty_root(suite: Suite) -> HashValue {
    Hasher::new(suite).finalize()
}

fn check_suite(expected: Suite, h: &HashValue) -> Result<()> {
    if h.suite() == expected {
        Ok(())
    } else {
        Err(ProofError::SuiteMismatch {
            expected,
            found: h.suite(),
        })
    }
}

/// MTH of a list of leaf hashes held in memory (RFC 9162 §2.1.1). For large or stored trees use
/// [`CompactRange`], [`MemoryTree`] or [`root_at`] over a [`NodeSource`].
pub fn root(suite: Suite, leaf_hashes: &[HashValue]) -> Result<HashValue> {
    let mut range = CompactRange::new(suite);
    for h in leaf_hashes {
        range.append(*h)?;
    }
    Ok(range.root())
}

/// Position of a perfect subtree: the `2^level` leaves starting at leaf `index * 2^level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    pub level: u8,
    pub index: u64,
}

impl NodeId {
    pub const fn new(level: u8, index: u64) -> Self {
        Self { level, index }
    }

    /// First leaf covered by this node.
    pub fn first_leaf(&self) -> Option<u64> {
        self.index
            .checked_mul(1u64.checked_shl(u32::from(self.level))?)
    }
}

/// Read access to the hashes of *perfect* subtrees (see [`NodeId`]) of an append-only tree,
/// the layout an append-only store can keep: node `(level, index)` never changes once the leaf
/// `(index + 1) * 2^level - 1` has been appended. Level 0 holds the leaf hashes.
///
/// Proof generation reads O(log n) such nodes; the hashes of subtrees that are incomplete at the
/// requested tree size (the ragged right edge) are computed from complete ones.
pub trait NodeSource {
    /// Storage errors; proof generation reports invalid arguments through `From<ProofError>`.
    type Error: From<ProofError>;

    /// The hash suite of the tree.
    fn suite(&self) -> Suite;

    /// Hash of the perfect subtree `(level, index)`. Only nodes complete within the tree sizes
    /// asked about are requested.
    fn node(&self, level: u8, index: u64) -> std::result::Result<HashValue, Self::Error>;

    /// Batch lookup, in order. Proof generation calls this once per proof, so a database-backed
    /// source can override it with a single query.
    fn nodes(&self, ids: &[NodeId]) -> std::result::Result<Vec<HashValue>, Self::Error> {
        ids.iter().map(|id| self.node(id.level, id.index)).collect()
    }
}

/// Largest power of two strictly smaller than `n` (`n >= 2`).
fn split_point(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The perfect subtrees covering `[start, end)`, largest first. Every range produced by the RFC
/// recursion starts at a multiple of the largest power of two it contains, so each is aligned.
fn range_nodes(start: u64, end: u64, out: &mut Vec<NodeId>) {
    let len = end - start;
    let mut pos = start;
    for level in (0..64u8).rev() {
        let width = 1u64 << level;
        if len & width != 0 {
            out.push(NodeId::new(level, pos >> level));
            pos += width;
        }
    }
}

/// MTH of `[start, end)` from its perfect subtrees (largest first): a right fold.
fn fold_range(suite: Suite, hashes: &[HashValue]) -> Result<HashValue> {
    let mut iter = hashes.iter().rev();
    let mut acc = *iter
        .next()
        .ok_or_else(|| ProofError::malformed("range", "empty range"))?;
    for h in iter {
        acc = node_hash(suite, h, &acc);
    }
    Ok(acc)
}

/// Subtrees (as leaf ranges) whose hashes form PATH(index, D[0:size]), in proof order.
fn inclusion_ranges(index: u64, size: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::with_capacity(64);
    let (mut start, mut end) = (0u64, size);
    while end - start > 1 {
        let k = split_point(end - start);
        if index < start + k {
            out.push((start + k, end));
            end = start + k;
        } else {
            out.push((start, start + k));
            start += k;
        }
    }
    out.reverse();
    out
}

/// Subtrees whose hashes form PROOF(old, D[0:new]) = SUBPROOF(old, D[0:new], true), `0 < old < new`.
fn consistency_ranges(old: u64, new: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::with_capacity(64);
    let (mut start, mut end, mut m, mut complete) = (0u64, new, old, true);
    loop {
        let n = end - start;
        if m == n {
            if !complete {
                out.push((start, end));
            }
            break;
        }
        let k = split_point(n);
        if m <= k {
            out.push((start + k, end));
            end = start + k;
        } else {
            out.push((start, start + k));
            start += k;
            m -= k;
            complete = false;
        }
    }
    out.reverse();
    out
}

/// Hashes of the given leaf ranges, reading all needed perfect nodes in one batch.
fn hash_ranges<S: NodeSource + ?Sized>(
    src: &S,
    ranges: &[(u64, u64)],
) -> std::result::Result<Vec<HashValue>, S::Error> {
    let suite = src.suite();
    let mut ids = Vec::new();
    let mut bounds = Vec::with_capacity(ranges.len());
    for &(start, end) in ranges {
        let first = ids.len();
        range_nodes(start, end, &mut ids);
        bounds.push((first, ids.len()));
    }
    let hashes = src.nodes(&ids)?;
    if hashes.len() != ids.len() {
        return Err(ProofError::malformed(
            "node source",
            format!("asked for {} nodes, got {}", ids.len(), hashes.len()),
        )
        .into());
    }
    for h in &hashes {
        check_suite(suite, h)?;
    }
    let mut out = Vec::with_capacity(ranges.len());
    for (first, last) in bounds {
        out.push(fold_range(suite, &hashes[first..last])?);
    }
    Ok(out)
}

/// Root hash of the first `size` leaves of the tree behind `src` (O(log size) node reads).
pub fn root_at<S: NodeSource + ?Sized>(
    src: &S,
    size: u64,
) -> std::result::Result<HashValue, S::Error> {
    if size == 0 {
        return Ok(empty_root(src.suite()));
    }
    let mut roots = hash_ranges(src, &[(0, size)])?;
    roots
        .pop()
        .ok_or_else(|| ProofError::malformed("range", "no root").into())
}

/// Inclusion proof `PATH(index, D[0:size])` (RFC 9162 §2.1.3.1), deepest sibling first.
pub fn inclusion_proof<S: NodeSource + ?Sized>(
    src: &S,
    index: u64,
    size: u64,
) -> std::result::Result<Vec<HashValue>, S::Error> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size }.into());
    }
    hash_ranges(src, &inclusion_ranges(index, size))
}

/// Consistency proof `PROOF(old_size, D[0:new_size])` (RFC 9162 §2.1.4.1). Empty when
/// `old_size` is 0 or equals `new_size`.
pub fn consistency_proof<S: NodeSource + ?Sized>(
    src: &S,
    old_size: u64,
    new_size: u64,
) -> std::result::Result<Vec<HashValue>, S::Error> {
    if old_size > new_size {
        return Err(ProofError::SizeRegression {
            first: old_size,
            second: new_size,
        }
        .into());
    }
    if old_size == 0 || old_size == new_size {
        return Ok(Vec::new());
    }
    hash_ranges(src, &consistency_ranges(old_size, new_size))
}

/// Number of hashes in the inclusion proof of leaf `index` in a tree of `size` leaves.
pub fn inclusion_proof_len(index: u64, size: u64) -> Result<usize> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let inner = 64 - (index ^ (size - 1)).leading_zeros();
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    Ok((inner + border) as usize)
}

/// Number of hashes in the consistency proof between tree sizes `old_size <= new_size`.
pub fn consistency_proof_len(old_size: u64, new_size: u64) -> Result<usize> {
    if old_size > new_size {
        return Err(ProofError::SizeRegression {
            first: old_size,
            second: new_size,
        });
    }
    if old_size == 0 || old_size == new_size {
        return Ok(0);
    }
    let inner = 64 - ((old_size - 1) ^ (new_size - 1)).leading_zeros();
    let border = (old_size - 1).checked_shr(inner).unwrap_or(0).count_ones();
    let shift = old_size.trailing_zeros();
    let seed = usize::from(!old_size.is_power_of_two());
    Ok(seed + (inner.saturating_sub(shift) + border) as usize)
}

/// Root implied by an inclusion proof: RFC 9162 §2.1.3.2 steps 1–4, after checking that the
/// proof has the length the index and size imply.
pub fn root_from_inclusion_proof(
    leaf_hash: &HashValue,
    index: u64,
    size: u64,
    proof: &[HashValue],
) -> Result<HashValue> {
    let suite = leaf_hash.suite();
    let expected = inclusion_proof_len(index, size)?;
    if proof.len() != expected {
        return Err(ProofError::WrongProofLength {
            expected,
            got: proof.len(),
        });
    }
    for p in proof {
        check_suite(suite, p)?;
    }
    // 2. fn = leaf_index, sn = tree_size - 1;  3. r = hash.
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf_hash;
    for p in proof {
        // 4a. If sn is 0, the proof is too long.
        if sn == 0 {
            return Err(ProofError::WrongProofLength {
                expected,
                got: proof.len(),
            });
        }
        // 4b.
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(suite, p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(suite, &r, p);
        }
        // 4c.
        fn_ >>= 1;
        sn >>= 1;
    }
    // 5. sn must be 0 (otherwise the proof is too short).
    if sn != 0 {
        return Err(ProofError::WrongProofLength {
            expected,
            got: proof.len(),
        });
    }
    Ok(r)
}

/// Verify that `leaf_hash` is leaf `index` of the tree of `size` leaves with root `root`
/// (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    leaf_hash: &HashValue,
    index: u64,
    size: u64,
    proof: &[HashValue],
    root: &HashValue,
) -> Result<()> {
    check_suite(leaf_hash.suite(), root)?;
    let computed = root_from_inclusion_proof(leaf_hash, index, size, proof)?;
    if computed == *root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch {
            expected: *root,
            computed,
        })
    }
}

/// Verify that the tree of `new_size` leaves with root `new_root` extends the tree of
/// `old_size` leaves with root `old_root` (RFC 9162 §2.1.4.2).
///
/// Edge cases outside the RFC algorithm: `old_size == new_size` needs an empty proof and equal
/// roots; `old_size == 0` needs an empty proof and `old_root` equal to the empty-tree hash.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &HashValue,
    new_root: &HashValue,
    proof: &[HashValue],
) -> Result<()> {
    let suite = old_root.suite();
    check_suite(suite, new_root)?;
    for p in proof {
        check_suite(suite, p)?;
    }
    let expected = consistency_proof_len(old_size, new_size)?;
    if proof.len() != expected {
        return Err(ProofError::WrongProofLength {
            expected,
            got: proof.len(),
        });
    }
    if old_size == new_size {
        return if old_root == new_root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch {
                expected: *new_root,
                computed: *old_root,
            })
        };
    }
    if old_size == 0 {
        let empty = empty_root(suite);
        return if *old_root == empty {
            Ok(())
        } else {
            Err(ProofError::OldRootMismatch {
                expected: *old_root,
                computed: empty,
            })
        };
    }
    // 1. An empty path fails (cannot happen here: 0 < old < new implies at least one hash).
    // 2. If first is an exact power of 2, prepend first_hash to the path.
    let mut path: Vec<&HashValue> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(old_root);
    }
    path.extend(proof.iter());
    let (first, rest) = path.split_first().ok_or(ProofError::WrongProofLength {
        expected,
        got: proof.len(),
    })?;
    // 3. fn = first - 1, sn = second - 1.
    let (mut fn_, mut sn) = (old_size - 1, new_size - 1);
    // 4. If LSB(fn) is set, right-shift both until it is not.
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    // 5. fr = sr = first value of the path.
    let (mut fr, mut sr) = (**first, **first);
    // 6.
    for c in rest {
        if sn == 0 {
            return Err(ProofError::WrongProofLength {
                expected,
                got: proof.len(),
            });
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(suite, c, &fr);
            sr = node_hash(suite, c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(suite, &sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    // 7. fr == first_hash, sr == second_hash, sn == 0.
    if sn != 0 {
        return Err(ProofError::WrongProofLength {
            expected,
            got: proof.len(),
        });
    }
    if fr != *old_root {
        return Err(ProofError::OldRootMismatch {
            expected: *old_root,
            computed: fr,
        });
    }
    if sr != *new_root {
        return Err(ProofError::RootMismatch {
            expected: *new_root,
            computed: sr,
        });
    }
    Ok(())
}

/// The right frontier of an append-only tree: the roots of the perfect subtrees covering
/// `[0, size)`, largest first (one per set bit of `size`, so at most 64). Enough to append and to
/// compute the current root in O(log n); what a state machine keeps in its snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactRange {
    suite: Suite,
    size: u64,
    hashes: Vec<HashValue>,
}

impl CompactRange {
    pub fn new(suite: Suite) -> Self {
        Self {
            suite,
            size: 0,
            hashes: Vec::new(),
        }
    }

    /// Rebuild from a stored frontier (as returned by [`Self::hashes`]).
    pub fn from_parts(suite: Suite, size: u64, hashes: Vec<HashValue>) -> Result<Self> {
        if hashes.len() != size.count_ones() as usize {
            return Err(ProofError::malformed(
                "compact range",
                format!(
                    "a tree of {size} leaves has {} frontier hashes, got {}",
                    size.count_ones(),
                    hashes.len()
                ),
            ));
        }
        for h in &hashes {
            check_suite(suite, h)?;
        }
        Ok(Self {
            suite,
            size,
            hashes,
        })
    }

    pub fn suite(&self) -> Suite {
        self.suite
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Frontier hashes, largest subtree first.
    pub fn hashes(&self) -> &[HashValue] {
        &self.hashes
    }

    /// The frontier as node positions, aligned with [`Self::hashes`].
    pub fn node_ids(&self) -> Vec<NodeId> {
        let mut ids = Vec::with_capacity(self.hashes.len());
        range_nodes(0, self.size, &mut ids);
        ids
    }

    /// MTH of the leaves appended so far.
    pub fn root(&self) -> HashValue {
        match fold_range(self.suite, &self.hashes) {
            Ok(h) => h,
            Err(_) => empty_root(self.suite),
        }
    }

    /// Append a leaf hash. Returns every perfect node completed by this leaf (the leaf itself at
    /// level 0 first, then its newly complete ancestors), for the caller to persist.
    pub fn append(&mut self, leaf_hash: HashValue) -> Result<Vec<(NodeId, HashValue)>> {
        check_suite(self.suite, &leaf_hash)?;
        if self.size == u64::MAX {
            return Err(ProofError::LimitExceeded("the tree is full".into()));
        }
        let mut created = Vec::with_capacity(1 + self.size.trailing_ones() as usize);
        let mut index = self.size;
        let mut level = 0u8;
        let mut acc = leaf_hash;
        created.push((NodeId::new(level, index), acc));
        while index & 1 == 1 {
            let left = self
                .hashes
                .pop()
                .ok_or_else(|| ProofError::malformed("compact range", "frontier too short"))?;
            acc = node_hash(self.suite, &left, &acc);
            index >>= 1;
            level += 1;
            created.push((NodeId::new(level, index), acc));
        }
        self.hashes.push(acc);
        self.size += 1;
        Ok(created)
    }
}

/// An in-memory append-only tree keeping every perfect subtree hash (about 2n hashes): a
/// [`NodeSource`] for proofs at any size up to the current one. Appending is O(log n).
#[derive(Debug, Clone)]
pub struct MemoryTree {
    levels: Vec<Vec<HashValue>>,
    frontier: CompactRange,
}

impl MemoryTree {
    pub fn new(suite: Suite) -> Self {
        Self {
            levels: Vec::new(),
            frontier: CompactRange::new(suite),
        }
    }

    /// A tree of the given leaf hashes.
    pub fn from_leaf_hashes(suite: Suite, leaf_hashes: &[HashValue]) -> Result<Self> {
        let mut tree = Self::new(suite);
        for h in leaf_hashes {
            tree.append(*h)?;
        }
        Ok(tree)
    }

    pub fn suite(&self) -> Suite {
        self.frontier.suite()
    }

    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// Append a leaf hash; returns the new leaf's index.
    pub fn append(&mut self, leaf_hash: HashValue) -> Result<u64> {
        let index = self.frontier.size();
        for (id, hash) in self.frontier.append(leaf_hash)? {
            let level = usize::from(id.level);
            if self.levels.len() <= level {
                self.levels.resize_with(level + 1, Vec::new);
            }
            self.levels[level].push(hash);
        }
        Ok(index)
    }

    /// Append the leaf `H(0x00 ‖ data)`; returns its index.
    pub fn append_data(&mut self, data: &[u8]) -> Result<u64> {
        self.append(leaf_hash(self.suite(), data))
    }

    /// Current root.
    pub fn root(&self) -> HashValue {
        self.frontier.root()
    }

    /// Root at an earlier size.
    pub fn root_at(&self, size: u64) -> Result<HashValue> {
        self.check_size(size)?;
        root_at(self, size)
    }

    pub fn leaf_hash(&self, index: u64) -> Result<HashValue> {
        self.node(0, index)
    }

    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<HashValue>> {
        self.check_size(size)?;
        inclusion_proof(self, index, size)
    }

    pub fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<Vec<HashValue>> {
        self.check_size(new_size)?;
        consistency_proof(self, old_size, new_size)
    }

    /// The frontier at the current size.
    pub fn compact_range(&self) -> &CompactRange {
        &self.frontier
    }

    fn check_size(&self, size: u64) -> Result<()> {
        if size > self.size() {
            Err(ProofError::SizeMismatch(format!(
                "tree size {size} requested, the tree has {} leaves",
                self.size()
            )))
        } else {
            Ok(())
        }
    }
}

impl NodeSource for MemoryTree {
    type Error = ProofError;

    fn suite(&self) -> Suite {
        self.frontier.suite()
    }

    fn node(&self, level: u8, index: u64) -> Result<HashValue> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.levels.get(usize::from(level))?.get(i))
            .copied()
            .ok_or(ProofError::NodeUnavailable { level, index })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn split_point_is_largest_power_below() {
        assert_eq!(split_point(2), 1);
        assert_eq!(split_point(3), 2);
        assert_eq!(split_point(4), 2);
        assert_eq!(split_point(5), 4);
        assert_eq!(split_point(u64::MAX), 1 << 63);
    }

    #[test]
    fn proof_lengths_match_range_counts() {
        for size in 1..200u64 {
            for index in 0..size {
                assert_eq!(
                    inclusion_proof_len(index, size).unwrap(),
                    inclusion_ranges(index, size).len()
                );
            }
            for old in 1..size {
                assert_eq!(
                    consistency_proof_len(old, size).unwrap(),
                    consistency_ranges(old, size).len(),
                    "{old} -> {size}"
                );
            }
        }
        assert_eq!(inclusion_proof_len(0, u64::MAX).unwrap(), 64);
        assert_eq!(inclusion_proof_len(u64::MAX - 1, u64::MAX).unwrap(), 63);
        assert!(consistency_proof_len(1, u64::MAX).unwrap() <= 128);
    }

    #[test]
    fn node_ids_of_huge_range_do_not_overflow() {
        let mut ids = Vec::new();
        range_nodes(0, u64::MAX, &mut ids);
        assert_eq!(ids.len(), 64);
        assert_eq!(ids[0], NodeId::new(63, 0));
        assert_eq!(ids[63], NodeId::new(0, u64::MAX - 1));
    }
}
