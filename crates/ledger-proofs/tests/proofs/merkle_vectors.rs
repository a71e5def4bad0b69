//! Published RFC 6962 / RFC 9162 reference vectors (SHA-256).
//!
//! Sources (transparency-dev/merkle, the Go reference used by Trillian, Tessera and sumdb):
//! * `proof/verify_test.go`: the 8 leaves, roots of sizes 1..=8, inclusion proofs
//!   (leaf, size) = (1,8) (6,8) (3,3) (2,5) with 1-based leaf numbers, consistency proofs
//!   1→8, 6→8, 2→5, 6→7, and the corruption probes ported in `corrupted_*`;
//! * `rfc6962/rfc6962_test.go`: empty root, empty leaf and "L123456" leaf hashes;
//! * `proof/proof_test.go`: which stored nodes (level, index) a proof is built from.

use std::cell::RefCell;
use std::collections::BTreeSet;

use caretrail_ledger_proofs::{
    HashValue, MemoryTree, NodeId, NodeSource, ProofError, Suite, consistency_proof, empty_root,
    inclusion_proof, leaf_hash, root, verify_consistency, verify_inclusion,
};

use super::common::{flip, sha};

const LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

const ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// (1-based leaf, tree size, proof) from verify_test.go `inclusionProofs`.
const INCLUSION: [(u64, u64, &[&str]); 4] = [
    (
        1,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        &[
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        3,
        3,
        &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
    ),
    (
        2,
        5,
        &[
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
];

/// (size1, size2, proof) from verify_test.go `consistencyProofs`.
const CONSISTENCY: [(u64, u64, &[&str]); 5] = [
    (1, 1, &[]),
    (
        1,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        &[
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
];

fn leaf_hashes() -> Vec<HashValue> {
    LEAVES
        .iter()
        .map(|l| leaf_hash(Suite::Intl, &hex::decode(l).unwrap()))
        .collect()
}

fn reference_tree() -> MemoryTree {
    MemoryTree::from_leaf_hashes(Suite::Intl, &leaf_hashes()).unwrap()
}

fn hashes(list: &[&str]) -> Vec<HashValue> {
    list.iter().map(|h| sha(h)).collect()
}

#[test]
fn rfc6962_hasher_vectors() {
    // rfc6962_test.go: "echo -n | sha256sum", "echo -n 00 | xxd -r -p | sha256sum",
    // "echo -n 004C313233343536 | xxd -r -p | sha256sum".
    assert_eq!(
        empty_root(Suite::Intl),
        sha("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    );
    assert_eq!(
        leaf_hash(Suite::Intl, b""),
        sha("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")
    );
    assert_eq!(
        leaf_hash(Suite::Intl, b"L123456"),
        sha("395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56")
    );
}

#[test]
fn roots_of_sizes_1_to_8() {
    let leaves = leaf_hashes();
    let tree = reference_tree();
    for (i, want) in ROOTS.iter().enumerate() {
        let size = i + 1;
        let want = sha(want);
        assert_eq!(
            root(Suite::Intl, &leaves[..size]).unwrap(),
            want,
            "size {size}"
        );
        assert_eq!(tree.root_at(size as u64).unwrap(), want, "size {size}");
        let prefix = MemoryTree::from_leaf_hashes(Suite::Intl, &leaves[..size]).unwrap();
        assert_eq!(prefix.root(), want);
        assert_eq!(prefix.compact_range().root(), want);
    }
    assert_eq!(tree.root_at(0).unwrap(), empty_root(Suite::Intl));
}

#[test]
fn published_inclusion_proofs_generate_and_verify() {
    let leaves = leaf_hashes();
    let tree = reference_tree();
    for (leaf, size, proof) in INCLUSION {
        let index = leaf - 1;
        let want = hashes(proof);
        assert_eq!(
            tree.inclusion_proof(index, size).unwrap(),
            want,
            "index {index} size {size}"
        );
        let root = sha(ROOTS[size as usize - 1]);
        verify_inclusion(&leaves[index as usize], index, size, &want, &root).unwrap();
    }
    // Single-leaf tree: empty proof, root = leaf hash.
    verify_inclusion(&leaves[0], 0, 1, &[], &sha(ROOTS[0])).unwrap();
}

#[test]
fn published_consistency_proofs_generate_and_verify() {
    let tree = reference_tree();
    for (size1, size2, proof) in CONSISTENCY {
        let want = hashes(proof);
        assert_eq!(
            tree.consistency_proof(size1, size2).unwrap(),
            want,
            "{size1} -> {size2}"
        );
        verify_consistency(
            size1,
            size2,
            &sha(ROOTS[size1 as usize - 1]),
            &sha(ROOTS[size2 as usize - 1]),
            &want,
        )
        .unwrap();
    }
}

/// verify_test.go `corruptInclusionProof`.
#[test]
fn corrupted_inclusion_proofs_fail() {
    let leaves = leaf_hashes();
    let some = sha("abacaba000000000000000000000000000000000000000000060061e00123456");
    let empty = empty_root(Suite::Intl);
    for (leaf, size, proof) in INCLUSION {
        let index = leaf - 1;
        let proof = hashes(proof);
        let root = sha(ROOTS[size as usize - 1]);
        let lh = leaves[index as usize];
        let wrong_leaf = leaf_hash(Suite::Intl, b"WrongLeaf");
        let mut probes: Vec<(String, u64, u64, HashValue, Vec<HashValue>, HashValue)> = vec![
            (
                "index - 1".into(),
                index.wrapping_sub(1),
                size,
                lh,
                proof.clone(),
                root,
            ),
            ("index + 1".into(), index + 1, size, lh, proof.clone(), root),
            ("index ^ 2".into(), index ^ 2, size, lh, proof.clone(), root),
            ("size * 2".into(), index, size * 2, lh, proof.clone(), root),
            ("size / 2".into(), index, size / 2, lh, proof.clone(), root),
            (
                "wrong leaf".into(),
                index,
                size,
                wrong_leaf,
                proof.clone(),
                root,
            ),
            ("empty root".into(), index, size, lh, proof.clone(), empty),
            ("random root".into(), index, size, lh, proof.clone(), some),
            (
                "trailing root".into(),
                index,
                size,
                lh,
                [proof.clone(), vec![root]].concat(),
                root,
            ),
            (
                "preceding root".into(),
                index,
                size,
                lh,
                [vec![root], proof.clone()].concat(),
                root,
            ),
        ];
        for i in 0..proof.len() {
            let mut p = proof.clone();
            p[i] = flip(&p[i], 0, 3);
            probes.push((
                format!("modified proof[{i}] bit 3"),
                index,
                size,
                lh,
                p,
                root,
            ));
        }
        if !proof.is_empty() {
            probes.push((
                "removed component".into(),
                index,
                size,
                lh,
                proof[..proof.len() - 1].to_vec(),
                root,
            ));
        }
        if proof.len() > 1 {
            let p = [vec![proof[0], some], proof[1..].to_vec()].concat();
            probes.push(("inserted component".into(), index, size, lh, p, root));
        }
        for (desc, i, s, l, p, r) in probes {
            assert!(
                verify_inclusion(&l, i, s, &p, &r).is_err(),
                "({leaf},{size}) accepted {desc}"
            );
        }
    }
}

/// verify_test.go `corruptConsistencyProof`.
#[test]
fn corrupted_consistency_proofs_fail() {
    for (size1, size2, proof) in CONSISTENCY {
        let proof = hashes(proof);
        if proof.is_empty() {
            continue;
        }
        let root1 = sha(ROOTS[size1 as usize - 1]);
        let root2 = sha(ROOTS[size2 as usize - 1]);
        let wrong = sha("abacaba000000000000000000000000000000000000000000060061e00123456");
        let mut probes: Vec<(String, u64, u64, HashValue, HashValue, Vec<HashValue>)> = vec![
            (
                "size1 - 1".into(),
                size1 - 1,
                size2,
                root1,
                root2,
                proof.clone(),
            ),
            (
                "size1 + 1".into(),
                size1 + 1,
                size2,
                root1,
                root2,
                proof.clone(),
            ),
            (
                "size1 ^ 2".into(),
                size1 ^ 2,
                size2,
                root1,
                root2,
                proof.clone(),
            ),
            (
                "size2 * 2".into(),
                size1,
                size2 * 2,
                root1,
                root2,
                proof.clone(),
            ),
            (
                "size2 / 2".into(),
                size1,
                size2 / 2,
                root1,
                root2,
                proof.clone(),
            ),
            (
                "wrong root1".into(),
                size1,
                size2,
                wrong,
                root2,
                proof.clone(),
            ),
            (
                "wrong root2".into(),
                size1,
                size2,
                root1,
                wrong,
                proof.clone(),
            ),
            (
                "swapped roots".into(),
                size1,
                size2,
                root2,
                root1,
                proof.clone(),
            ),
            ("empty proof".into(), size1, size2, root1, root2, vec![]),
            (
                "trailing root1".into(),
                size1,
                size2,
                root1,
                root2,
                [proof.clone(), vec![root1]].concat(),
            ),
            (
                "trailing root2".into(),
                size1,
                size2,
                root1,
                root2,
                [proof.clone(), vec![root2]].concat(),
            ),
            (
                "preceding root1".into(),
                size1,
                size2,
                root1,
                root2,
                [vec![root1], proof.clone()].concat(),
            ),
            (
                "preceding root2".into(),
                size1,
                size2,
                root1,
                root2,
                [vec![root2], proof.clone()].concat(),
            ),
            (
                "preceding proof[0]".into(),
                size1,
                size2,
                root1,
                root2,
                [vec![proof[0]], proof.clone()].concat(),
            ),
            (
                "truncated proof".into(),
                size1,
                size2,
                root1,
                root2,
                proof[..proof.len() - 1].to_vec(),
            ),
        ];
        for i in 0..proof.len() {
            let mut p = proof.clone();
            p[i] = flip(&p[i], 0, 4);
            probes.push((
                format!("modified proof[{i}] bit 4"),
                size1,
                size2,
                root1,
                root2,
                p,
            ));
        }
        for (desc, s1, s2, r1, r2, p) in probes {
            assert!(
                verify_consistency(s1, s2, &r1, &r2, &p).is_err(),
                "({size1},{size2}) accepted {desc}"
            );
        }
    }
}

/// verify_test.go `TestVerifyConsistency` edge cases, with our stricter rule that a size-0
/// tree must have the empty root.
#[test]
fn consistency_edge_cases() {
    let r1 = sha(ROOTS[0]);
    let r2 = sha(ROOTS[1]);
    let empty = empty_root(Suite::Intl);
    // Same size: roots must match and the proof must be empty.
    verify_consistency(1, 1, &r1, &r1, &[]).unwrap();
    assert!(matches!(
        verify_consistency(1, 1, &r1, &r2, &[]),
        Err(ProofError::RootMismatch { .. })
    ));
    assert!(matches!(
        verify_consistency(1, 1, &r1, &r1, &[empty]),
        Err(ProofError::WrongProofLength {
            expected: 0,
            got: 1
        })
    ));
    // From the empty tree.
    verify_consistency(0, 0, &empty, &empty, &[]).unwrap();
    verify_consistency(0, 5, &empty, &r2, &[]).unwrap();
    assert!(verify_consistency(0, 5, &r1, &r2, &[]).is_err());
    assert!(verify_consistency(0, 1, &empty, &r1, &[empty]).is_err());
    // Time travel.
    assert!(matches!(
        verify_consistency(2, 1, &r2, &r1, &[]),
        Err(ProofError::SizeRegression {
            first: 2,
            second: 1
        })
    ));
    // Empty proof between different sizes.
    assert!(matches!(
        verify_consistency(1, 2, &r1, &r2, &[]),
        Err(ProofError::WrongProofLength {
            expected: 1,
            got: 0
        })
    ));
}

#[test]
fn inclusion_edge_cases() {
    let h = leaf_hash(Suite::Intl, b"data");
    // One-entry tree: root = leaf hash, empty proof.
    verify_inclusion(&h, 0, 1, &[], &h).unwrap();
    for (index, size) in [(0, 0), (1, 0), (1, 1), (2, 1)] {
        assert!(matches!(
            verify_inclusion(&h, index, size, &[], &h),
            Err(ProofError::IndexOutOfRange { .. })
        ));
    }
    // Mixed suites are rejected up front.
    let gm = HashValue::new(Suite::Gm, *h.as_bytes());
    assert!(matches!(
        verify_inclusion(&h, 0, 1, &[], &gm),
        Err(ProofError::SuiteMismatch { .. })
    ));
}

/// A node source that records which perfect nodes were read.
struct Recording<'a> {
    tree: &'a MemoryTree,
    reads: RefCell<Vec<NodeId>>,
    batches: RefCell<usize>,
}

impl NodeSource for Recording<'_> {
    type Error = ProofError;

    fn suite(&self) -> Suite {
        self.tree.suite()
    }

    fn node(&self, level: u8, index: u64) -> Result<HashValue, ProofError> {
        self.reads.borrow_mut().push(NodeId::new(level, index));
        self.tree.node(level, index)
    }

    fn nodes(&self, ids: &[NodeId]) -> Result<Vec<HashValue>, ProofError> {
        *self.batches.borrow_mut() += 1;
        ids.iter().map(|id| self.node(id.level, id.index)).collect()
    }
}

/// (size or size1, index or size2, expected (level, index) node ids).
type NodeCase<'a> = (u64, u64, &'a [(u8, u64)]);

fn ids(list: &[(u8, u64)]) -> BTreeSet<NodeId> {
    list.iter().map(|&(l, i)| NodeId::new(l, i)).collect()
}

/// proof_test.go `TestInclusion` / `TestConsistency`: the stored nodes each proof is built from
/// (the Go code lists node ids and "rehash" ranges; we compare the sets of ids).
#[test]
fn proofs_read_the_published_node_sets() {
    let tree = super::common::tree(Suite::Intl, 100);
    let src = Recording {
        tree: &tree,
        reads: RefCell::new(Vec::new()),
        batches: RefCell::new(0),
    };
    let inclusion: &[NodeCase] = &[
        (1, 0, &[]),
        (2, 0, &[(0, 1)]),
        (2, 1, &[(0, 0)]),
        (3, 1, &[(0, 0), (0, 2)]),
        (7, 0, &[(0, 1), (1, 1), (0, 6), (1, 2)]),
        (7, 2, &[(0, 3), (1, 0), (0, 6), (1, 2)]),
        (7, 4, &[(0, 5), (0, 6), (2, 0)]),
        (7, 6, &[(1, 2), (2, 0)]),
        (5, 3, &[(0, 2), (1, 0), (0, 4)]),
        (6, 4, &[(0, 5), (2, 0)]),
        (15, 10, &[(0, 11), (1, 4), (0, 14), (1, 6), (3, 0)]),
        (
            31,
            24,
            &[(0, 25), (1, 13), (0, 30), (1, 14), (3, 2), (4, 0)],
        ),
        (
            95,
            81,
            &[
                (0, 80),
                (1, 41),
                (2, 21),
                (0, 94),
                (1, 46),
                (2, 22),
                (4, 4),
                (6, 0),
            ],
        ),
    ];
    for &(size, index, want) in inclusion {
        src.reads.borrow_mut().clear();
        *src.batches.borrow_mut() = 0;
        inclusion_proof(&src, index, size).unwrap();
        let got: BTreeSet<NodeId> = src.reads.borrow().iter().copied().collect();
        assert_eq!(got, ids(want), "inclusion {index} in {size}");
        assert_eq!(src.reads.borrow().len(), want.len(), "no node read twice");
        assert_eq!(*src.batches.borrow(), 1, "one batch per proof");
    }
    let consistency: &[NodeCase] = &[
        (1, 2, &[(0, 1)]),
        (1, 4, &[(0, 1), (1, 1)]),
        (1, 6, &[(0, 1), (1, 1), (1, 2)]),
        (2, 3, &[(0, 2)]),
        (2, 8, &[(1, 1), (2, 1)]),
        (3, 7, &[(0, 2), (0, 3), (1, 0), (0, 6), (1, 2)]),
        (4, 7, &[(0, 6), (1, 2)]),
        (5, 7, &[(0, 4), (0, 5), (0, 6), (2, 0)]),
        (6, 7, &[(1, 2), (0, 6), (2, 0)]),
        (7, 8, &[(0, 6), (0, 7), (1, 2), (2, 0)]),
        (1, 1, &[]),
        (8, 8, &[]),
        (2, 4, &[(1, 1)]),
        (3, 5, &[(0, 2), (0, 3), (1, 0), (0, 4)]),
        (3, 6, &[(0, 2), (0, 3), (1, 0), (1, 2)]),
        (4, 6, &[(1, 2)]),
        (1, 7, &[(0, 1), (1, 1), (0, 6), (1, 2)]),
        (10, 15, &[(1, 4), (1, 5), (0, 14), (1, 6), (3, 0)]),
        (24, 31, &[(3, 2), (0, 30), (1, 14), (2, 6), (4, 0)]),
        (
            81,
            95,
            &[
                (0, 80),
                (0, 81),
                (1, 41),
                (2, 21),
                (0, 94),
                (1, 46),
                (2, 22),
                (4, 4),
                (6, 0),
            ],
        ),
    ];
    for &(size1, size2, want) in consistency {
        src.reads.borrow_mut().clear();
        consistency_proof(&src, size1, size2).unwrap();
        let got: BTreeSet<NodeId> = src.reads.borrow().iter().copied().collect();
        assert_eq!(got, ids(want), "consistency {size1} -> {size2}");
    }
    // Errors (proof_test.go): index beyond size, size1 > size2.
    for (size, index) in [(0, 0), (0, 1), (1, 2), (0, 3), (7, 8)] {
        assert!(inclusion_proof(&src, index, size).is_err());
    }
    assert!(consistency_proof(&src, 5, 0).is_err());
    assert!(consistency_proof(&src, 9, 8).is_err());
}
