use caretrail_crypto::{SignatureAlgorithm, SigningKey};
use caretrail_ledger_proofs::{HashValue, MemoryTree, Suite, leaf_hash};

/// A SHA-256 hash from hex.
pub fn sha(hex: &str) -> HashValue {
    HashValue::from_hex(Suite::Intl, hex).unwrap()
}

/// Deterministic signing key of the suite's default algorithm.
pub fn key(suite: Suite, seed: u8) -> SigningKey {
    key_alg(suite.signature_algorithm(), seed)
}

pub fn key_alg(alg: SignatureAlgorithm, seed: u8) -> SigningKey {
    let mut bytes = [seed; 32];
    bytes[0] = 0x11; // keeps SM2 / P-256 scalars in range for any seed
    SigningKey::from_secret_bytes(alg, &bytes).unwrap()
}

/// A tree of `n` leaves `"leaf <i>"`.
pub fn tree(suite: Suite, n: u64) -> MemoryTree {
    let mut t = MemoryTree::new(suite);
    for i in 0..n {
        t.append(leaf_hash(suite, format!("leaf {i}").as_bytes()))
            .unwrap();
    }
    t
}

/// Flip one bit of a hash.
pub fn flip(h: &HashValue, byte: usize, bit: u8) -> HashValue {
    let mut b = *h.as_bytes();
    b[byte % 32] ^= 1 << (bit % 8);
    HashValue::new(h.suite(), b)
}
