//! Generated proofs against a direct transcription of the RFC 9162 recursive definitions, and
//! against verification, for every index/size pair up to 64 leaves in both suites.

use caretrail_ledger_proofs::{
    CompactRange, HashValue, MemoryTree, NodeId, ProofError, Suite, empty_root, leaf_hash,
    node_hash, root, root_at, verify_consistency, verify_inclusion,
};

/// MTH(D[n]) per RFC 9162 §2.1.1.
fn mth(suite: Suite, d: &[HashValue]) -> HashValue {
    match d.len() {
        0 => empty_root(suite),
        1 => d[0],
        n => {
            let k = largest_pow2_below(n);
            node_hash(suite, &mth(suite, &d[..k]), &mth(suite, &d[k..]))
        }
    }
}

fn largest_pow2_below(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// PATH(m, D[n]) per RFC 9162 §2.1.3.1.
fn path(suite: Suite, m: usize, d: &[HashValue]) -> Vec<HashValue> {
    let n = d.len();
    if n == 1 {
        return vec![];
    }
    let k = largest_pow2_below(n);
    if m < k {
        let mut p = path(suite, m, &d[..k]);
        p.push(mth(suite, &d[k..]));
        p
    } else {
        let mut p = path(suite, m - k, &d[k..]);
        p.push(mth(suite, &d[..k]));
        p
    }
}

/// SUBPROOF(m, D[n], b) per RFC 9162 §2.1.4.1.
fn subproof(suite: Suite, m: usize, d: &[HashValue], b: bool) -> Vec<HashValue> {
    let n = d.len();
    if m == n {
        return if b { vec![] } else { vec![mth(suite, d)] };
    }
    let k = largest_pow2_below(n);
    if m <= k {
        let mut p = subproof(suite, m, &d[..k], b);
        p.push(mth(suite, &d[k..]));
        p
    } else {
        let mut p = subproof(suite, m - k, &d[k..], false);
        p.push(mth(suite, &d[..k]));
        p
    }
}

fn leaves(suite: Suite, n: usize) -> Vec<HashValue> {
    (0..n)
        .map(|i| leaf_hash(suite, format!("entry {i}").as_bytes()))
        .collect()
}

const MAX: usize = 64;

#[test]
fn roots_match_the_recursive_definition() {
    for suite in Suite::ALL {
        let d = leaves(suite, MAX);
        let tree = MemoryTree::from_leaf_hashes(suite, &d).unwrap();
        let mut range = CompactRange::new(suite);
        assert_eq!(range.root(), empty_root(suite));
        for n in 1..=MAX {
            range.append(d[n - 1]).unwrap();
            let want = mth(suite, &d[..n]);
            assert_eq!(root(suite, &d[..n]).unwrap(), want, "{suite} {n}");
            assert_eq!(tree.root_at(n as u64).unwrap(), want, "{suite} {n}");
            assert_eq!(root_at(&tree, n as u64).unwrap(), want);
            assert_eq!(range.root(), want);
            // The frontier is the perfect-subtree decomposition and can be rebuilt.
            let rebuilt =
                CompactRange::from_parts(suite, n as u64, range.hashes().to_vec()).unwrap();
            assert_eq!(rebuilt.root(), want);
            assert_eq!(range.node_ids().len(), (n as u64).count_ones() as usize);
        }
        assert_eq!(
            mth(Suite::Gm, &[]),
            empty_root(Suite::Gm),
            "SM3 of the empty string"
        );
    }
}

#[test]
fn every_inclusion_proof_up_to_64_leaves() {
    for suite in Suite::ALL {
        let d = leaves(suite, MAX);
        let tree = MemoryTree::from_leaf_hashes(suite, &d).unwrap();
        for n in 1..=MAX {
            let r = mth(suite, &d[..n]);
            for m in 0..n {
                let proof = tree.inclusion_proof(m as u64, n as u64).unwrap();
                assert_eq!(proof, path(suite, m, &d[..n]), "{suite} PATH({m}, D[{n}])");
                verify_inclusion(&d[m], m as u64, n as u64, &proof, &r).unwrap();
                // The same proof must not verify any other leaf of this tree.
                for other in [m + 1, m.wrapping_sub(1)] {
                    if other < n {
                        assert!(
                            verify_inclusion(&d[other], m as u64, n as u64, &proof, &r).is_err()
                        );
                        assert!(
                            verify_inclusion(&d[m], other as u64, n as u64, &proof, &r).is_err()
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn every_consistency_proof_up_to_64_leaves() {
    for suite in Suite::ALL {
        let d = leaves(suite, MAX);
        let tree = MemoryTree::from_leaf_hashes(suite, &d).unwrap();
        let roots: Vec<HashValue> = (0..=MAX).map(|n| mth(suite, &d[..n])).collect();
        for n in 1..=MAX {
            for m in 0..=n {
                let proof = tree.consistency_proof(m as u64, n as u64).unwrap();
                let want = if m == 0 {
                    vec![]
                } else {
                    subproof(suite, m, &d[..n], true)
                };
                assert_eq!(proof, want, "{suite} PROOF({m}, D[{n}])");
                verify_consistency(m as u64, n as u64, &roots[m], &roots[n], &proof).unwrap();
                if m > 0 && m < n {
                    // Wrong old root / new root.
                    assert!(
                        verify_consistency(m as u64, n as u64, &roots[m - 1], &roots[n], &proof)
                            .is_err()
                    );
                    assert!(
                        verify_consistency(m as u64, n as u64, &roots[m], &roots[n - 1], &proof)
                            .is_err()
                    );
                }
            }
        }
    }
}

#[test]
fn compact_range_reports_created_nodes() {
    let suite = Suite::Gm;
    let d = leaves(suite, 8);
    let mut range = CompactRange::new(suite);
    let mut created = Vec::new();
    for h in &d {
        created.push(range.append(*h).unwrap());
    }
    let levels = |i: usize| -> Vec<NodeId> { created[i].iter().map(|(id, _)| *id).collect() };
    assert_eq!(levels(0), vec![NodeId::new(0, 0)]);
    assert_eq!(levels(1), vec![NodeId::new(0, 1), NodeId::new(1, 0)]);
    assert_eq!(levels(2), vec![NodeId::new(0, 2)]);
    assert_eq!(
        levels(7),
        vec![
            NodeId::new(0, 7),
            NodeId::new(1, 3),
            NodeId::new(2, 1),
            NodeId::new(3, 0)
        ]
    );
    assert_eq!(created[7].last().unwrap().1, mth(suite, &d));
    // Wrong-suite leaves and inconsistent frontiers are rejected.
    assert!(matches!(
        range.append(leaf_hash(Suite::Intl, b"x")),
        Err(ProofError::SuiteMismatch { .. })
    ));
    assert!(CompactRange::from_parts(suite, 3, vec![d[0]]).is_err());
}

#[test]
fn memory_tree_rejects_sizes_beyond_its_leaves() {
    let tree = super::common::tree(Suite::Intl, 5);
    assert!(tree.inclusion_proof(0, 6).is_err());
    assert!(tree.consistency_proof(2, 6).is_err());
    assert!(tree.root_at(6).is_err());
    assert!(tree.leaf_hash(5).is_err());
    assert_eq!(
        tree.leaf_hash(4).unwrap(),
        leaf_hash(Suite::Intl, b"leaf 4")
    );
}
