//! `cargo bench -p caretrail-crypto`. Figures are recorded in docs/PERFORMANCE.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use caretrail_crypto::stream::{decrypt_to_vec, encrypt_to_vec};
use caretrail_crypto::{Aead, DataKey, MacKey, SignatureAlgorithm, SigningKey, Suite, hash};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const MIB: usize = 1024 * 1024;

fn input(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3])
        .collect()
}

fn hashing(c: &mut Criterion) {
    let data = input(MIB);
    let mut g = c.benchmark_group("hash");
    g.throughput(Throughput::Bytes(MIB as u64));
    for suite in Suite::ALL {
        g.bench_function(BenchmarkId::new(suite.hash_name(), "1MiB"), |b| {
            b.iter(|| hash(suite, black_box(&data)))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("hmac");
    for suite in Suite::ALL {
        let key = MacKey::generate(suite).unwrap();
        g.throughput(Throughput::Bytes(MIB as u64));
        g.bench_function(
            BenchmarkId::new(format!("HMAC-{}", suite.hash_name()), "1MiB"),
            |b| b.iter(|| key.mac(black_box(&data))),
        );
        // Pseudonymous patient ids: short inputs, so per-call cost matters.
        g.throughput(Throughput::Elements(1));
        g.bench_function(
            BenchmarkId::new(format!("HMAC-{}", suite.hash_name()), "36B-id"),
            |b| b.iter(|| key.mac(black_box(b"0b9a6f4e-3c1d-4e8f-9a2b-7c6d5e4f3a2b"))),
        );
    }
    g.finish();
}

fn aead(c: &mut Criterion) {
    let nonce = [7u8; 12];
    // Same sizes as the streaming groups, so each streaming figure has a raw baseline.
    for (label, len, secs) in [("1MiB", MIB, 3u64), ("64MiB", 64 * MIB, 5)] {
        let data = input(len);
        let mut g = c.benchmark_group(format!("aead-raw-{label}"));
        g.throughput(Throughput::Bytes(len as u64));
        g.measurement_time(Duration::from_secs(secs));
        for suite in Suite::ALL {
            let key = DataKey::generate(suite).unwrap();
            let aead = Aead::new(&key);
            let sealed = aead.encrypt(&nonce, b"", &data).unwrap();
            g.bench_function(
                BenchmarkId::new(format!("{} seal", suite.aead_name()), label),
                |b| b.iter(|| aead.encrypt(&nonce, b"", black_box(&data)).unwrap()),
            );
            g.bench_function(
                BenchmarkId::new(format!("{} open", suite.aead_name()), label),
                |b| b.iter(|| aead.decrypt(&nonce, b"", black_box(&sealed)).unwrap()),
            );
        }
        g.finish();
    }
}

fn streaming(c: &mut Criterion) {
    for (label, len, secs) in [("1MiB", MIB, 3u64), ("64MiB", 64 * MIB, 5)] {
        let data = input(len);
        let mut g = c.benchmark_group(format!("stream-{label}"));
        g.throughput(Throughput::Bytes(len as u64));
        g.measurement_time(Duration::from_secs(secs));
        for suite in Suite::ALL {
            let key = DataKey::generate(suite).unwrap();
            let ct = encrypt_to_vec(&key, b"obj", &data).unwrap();
            g.bench_function(
                BenchmarkId::new(format!("{} seal", suite.aead_name()), label),
                |b| b.iter(|| encrypt_to_vec(&key, b"obj", black_box(&data)).unwrap()),
            );
            g.bench_function(
                BenchmarkId::new(format!("{} open", suite.aead_name()), label),
                |b| b.iter(|| decrypt_to_vec(&key, b"obj", black_box(&ct)).unwrap()),
            );
        }
        g.finish();
    }
}

fn signatures(c: &mut Criterion) {
    let msg = input(256);
    let mut g = c.benchmark_group("signature");
    g.throughput(Throughput::Elements(1));
    for alg in [
        SignatureAlgorithm::Ed25519,
        SignatureAlgorithm::Sm2,
        SignatureAlgorithm::EcdsaP256,
    ] {
        let sk = SigningKey::generate(alg).unwrap();
        let vk = sk.public_key();
        let sig = sk.sign(&msg).unwrap();
        g.bench_function(BenchmarkId::new(alg.as_str(), "sign"), |b| {
            b.iter(|| sk.sign(black_box(&msg)).unwrap())
        });
        g.bench_function(BenchmarkId::new(alg.as_str(), "verify"), |b| {
            b.iter(|| vk.verify(black_box(&msg), &sig).unwrap())
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = hashing, aead, streaming, signatures
}
criterion_main!(benches);
