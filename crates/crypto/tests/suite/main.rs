//! The crate's single integration-test binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod keys;
mod negative;
mod openssl;
mod props;
mod streaming;
mod tools;
mod vectors;
mod x509;

/// Hex to bytes; spaces are ignored so vectors can be pasted as published.
pub fn h(s: &str) -> Vec<u8> {
    hex::decode(s.split_whitespace().collect::<String>()).unwrap()
}

/// Deterministic filler (tests need reproducible, non-trivial data; randomness is not the point).
pub fn data(len: usize, seed: u8) -> Vec<u8> {
    let mut x = u32::from(seed).wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}
