//! Random mutations of a valid proof, leaf, root, size or index make verification fail.

use std::sync::OnceLock;

use caretrail_ledger_proofs::{HashValue, MemoryTree, Suite, verify_consistency, verify_inclusion};
use proptest::prelude::*;

use super::common::flip;

const TOTAL: u64 = 150;

fn trees() -> &'static [MemoryTree; 2] {
    static TREES: OnceLock<[MemoryTree; 2]> = OnceLock::new();
    TREES.get_or_init(|| {
        [
            super::common::tree(Suite::Intl, TOTAL),
            super::common::tree(Suite::Gm, TOTAL),
        ]
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    FlipProof { which: usize, byte: usize, bit: u8 },
    FlipLeaf { byte: usize, bit: u8 },
    FlipRoot { byte: usize, bit: u8 },
    Index(u64),
    Size(u64),
    Drop(usize),
    Duplicate(usize),
    SwapAdjacent(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<usize>(), any::<u8>())
            .prop_map(|(which, byte, bit)| Mutation::FlipProof { which, byte, bit }),
        (any::<usize>(), any::<u8>()).prop_map(|(byte, bit)| Mutation::FlipLeaf { byte, bit }),
        (any::<usize>(), any::<u8>()).prop_map(|(byte, bit)| Mutation::FlipRoot { byte, bit }),
        (0..TOTAL + 5).prop_map(Mutation::Index),
        (0..TOTAL + 5).prop_map(Mutation::Size),
        any::<usize>().prop_map(Mutation::Drop),
        any::<usize>().prop_map(Mutation::Duplicate),
        any::<usize>().prop_map(Mutation::SwapAdjacent),
    ]
}

/// Apply a mutation to a proof list; `None` when it would not change anything.
fn mutate_list(proof: &[HashValue], m: &Mutation) -> Option<Vec<HashValue>> {
    let mut p = proof.to_vec();
    match *m {
        Mutation::FlipProof { which, byte, bit } if !p.is_empty() => {
            let i = which % p.len();
            p[i] = flip(&p[i], byte, bit);
        }
        Mutation::Drop(i) if !p.is_empty() => {
            p.remove(i % proof.len());
        }
        Mutation::Duplicate(i) if !p.is_empty() => {
            let i = i % p.len();
            p.insert(i, p[i]);
        }
        Mutation::SwapAdjacent(i) if p.len() > 1 => {
            let i = i % (p.len() - 1);
            if p[i] == p[i + 1] {
                return None;
            }
            p.swap(i, i + 1);
        }
        _ => return None,
    }
    Some(p)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn mutated_inclusion_proofs_fail(
        suite_ix in 0usize..2,
        size in 1..=TOTAL,
        index_seed in any::<u64>(),
        m in mutation(),
    ) {
        let tree = &trees()[suite_ix];
        let index = index_seed % size;
        let proof = tree.inclusion_proof(index, size).unwrap();
        let leaf = tree.leaf_hash(index).unwrap();
        let root = tree.root_at(size).unwrap();
        verify_inclusion(&leaf, index, size, &proof, &root).unwrap();

        // What a verifier would be handed after the mutation; the root always comes from a
        // (signed) tree head of the claimed size.
        let (l, i, s, p, r) = match m {
            Mutation::FlipLeaf { byte, bit } => (flip(&leaf, byte, bit), index, size, proof, root),
            Mutation::FlipRoot { byte, bit } => (leaf, index, size, proof, flip(&root, byte, bit)),
            Mutation::Index(i) if i != index => (leaf, i, size, proof, root),
            Mutation::Size(s) if s != size && s > 0 && s <= TOTAL => {
                (leaf, index, s, proof, tree.root_at(s).unwrap())
            }
            // A wrong size claimed beside the *true* root is not always detectable from the
            // proof alone (for leaf 0 of sizes 129 and 151 the path has the same shape and
            // hashes); what binds size to root is the signed checkpoint, tested elsewhere.
            Mutation::Size(_) => return Ok(()),
            ref other => match mutate_list(&proof, other) {
                Some(p) => (leaf, index, size, p, root),
                None => return Ok(()),
            },
        };
        prop_assert!(verify_inclusion(&l, i, s, &p, &r).is_err());
    }

    #[test]
    fn mutated_consistency_proofs_fail(
        suite_ix in 0usize..2,
        new_size in 2..=TOTAL,
        old_seed in any::<u64>(),
        m in mutation(),
    ) {
        let tree = &trees()[suite_ix];
        let old_size = 1 + old_seed % (new_size - 1);
        let proof = tree.consistency_proof(old_size, new_size).unwrap();
        let old_root = tree.root_at(old_size).unwrap();
        let new_root = tree.root_at(new_size).unwrap();
        verify_consistency(old_size, new_size, &old_root, &new_root, &proof).unwrap();

        let (o, n, or, nr, p) = match m {
            Mutation::FlipLeaf { byte, bit } => {
                (old_size, new_size, flip(&old_root, byte, bit), new_root, proof)
            }
            Mutation::FlipRoot { byte, bit } => {
                (old_size, new_size, old_root, flip(&new_root, byte, bit), proof)
            }
            Mutation::Index(o) if o != old_size && o > 0 && o <= TOTAL => {
                (o, new_size, tree.root_at(o).unwrap(), new_root, proof)
            }
            Mutation::Size(n) if n != new_size && n > 0 && n <= TOTAL => {
                (old_size, n, old_root, tree.root_at(n).unwrap(), proof)
            }
            ref other => match mutate_list(&proof, other) {
                Some(p) => (old_size, new_size, old_root, new_root, p),
                None => return Ok(()),
            },
        };
        prop_assert!(verify_consistency(o, n, &or, &nr, &p).is_err());
    }
}
