//! Proof generation on the durable store at large sizes: inclusion and consistency proofs read
//! O(log n) stored subtree hashes, so their cost should stay flat as the ledger grows.
//!
//! `LEDGER_BENCH_ENTRIES` (default 1,000,000) entries of ~256-byte payloads are applied straight
//! to the state machine (no Raft, no signatures) in batches of 2,000; the store is reopened (as
//! by a restarted node, which loads the upper tree levels and the leaf hashes into memory),
//! then proofs are timed at random indexes, with everything in memory, without the leaf hashes,
//! and with nothing in memory, as are a receipt's proof and a root at sizes ending mid-block.
//! Also prints the fill rate and the state file's bytes per entry.
//! `LEDGER_BENCH_TENANTS=k` spreads the entries over k tenants in turn (proofs on the first);
//! `LEDGER_BENCH_LEAF_CACHE_MB` sets the leaf-hash budget (default: enough for every entry);
//! `LEDGER_BENCH_STATE_CACHE_MB` redb's page cache of the state (default: the node's);
//! `LEDGER_BENCH_GENERATION_ENTRIES` the entries per index generation (default: the node's);
//! `LEDGER_BENCH_AT_REST=0` keeps entries in clear (nodes seal them at rest, the default here).
//! After the reopen, appends in small transactions are timed (see `time_appends`).
//! `LEDGER_BENCH_KEEP=1` keeps the filled store in `LEDGER_BENCH_DIR/proofs-<n>x<k>` and reuses
//! it on the next run; `LEDGER_BENCH_IDLE_SECS=s` waits before timing, so that the host can
//! page the state file out as it does for a node that serves proofs now and then;
//! `LEDGER_BENCH_DROP_CACHES=1` (root only) empties the host's page cache before the reopen, to
//! time a restart from a cold cache and proofs served while the tree nodes load.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Instant;

use caretrail_crypto::{SignatureAlgorithm, SigningKey, Suite};
use caretrail_ledger::storage::keys::REGISTRAR;
use caretrail_ledger::storage::{
    self, AppendRequest, LedgerCommand, LedgerStateMachine, StoreOptions, TenantSpec, TypeConfig,
};
use criterion::{Criterion, criterion_group, criterion_main};
use openraft::{CommittedLeaderId, EntryPayload, LogId};
use rand::Rng;

const TENANT: &str = "ten_bench";

fn entry(index: u64, cmd: LedgerCommand) -> openraft::Entry<TypeConfig> {
    openraft::Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(cmd),
    }
}

/// Times inclusion proofs at random indexes for as long as the tree nodes are loading (at
/// most 10,000), as a restarted node serves them.
fn time_proofs_while_loading(view: &storage::view::LedgerView) {
    let tree = view.tree(TENANT).unwrap();
    let size = tree.size();
    let mut rng = rand::thread_rng();
    let started = Instant::now();
    let mut proofs = 0u32;
    while proofs < 10_000 && view.loading_tree_nodes() {
        black_box(tree.inclusion_proof(rng.gen_range(0..size), size).unwrap());
        proofs += 1;
    }
    if proofs > 0 {
        eprintln!(
            "while the tree nodes loaded: {proofs} inclusion proofs, {:.1?} each on average",
            started.elapsed() / proofs
        );
    }
}

/// Empties the host's page cache (needs root), so that the reopen reads from disk.
fn drop_page_cache() {
    let dropped = std::process::Command::new("sync")
        .status()
        .map_err(|e| e.to_string())
        .and_then(|_| std::fs::write("/proc/sys/vm/drop_caches", "3").map_err(|e| e.to_string()));
    match dropped {
        Ok(()) => eprintln!("page cache dropped"),
        Err(e) => eprintln!("could not drop the page cache ({e}); the reopen may be warm"),
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn proofs(c: &mut Criterion) {
    let n = env_u64("LEDGER_BENCH_ENTRIES").unwrap_or(1_000_000);
    // With several tenants, entries go to them in turn (as when many institutions write at
    // once); proofs are timed on the first.
    let tenant_count = env_u64("LEDGER_BENCH_TENANTS").unwrap_or(1).max(1);
    let base =
        std::path::PathBuf::from(std::env::var("LEDGER_BENCH_DIR").unwrap_or_else(|_| ".".into()));
    let (_temp, dir) = if std::env::var("LEDGER_BENCH_KEEP").as_deref() == Ok("1") {
        let dir = base.join(format!("proofs-{n}x{tenant_count}"));
        std::fs::create_dir_all(&dir).unwrap();
        (None, dir)
    } else {
        let temp = tempfile::tempdir_in(&base).unwrap();
        let dir = temp.path().to_path_buf();
        (Some(temp), dir)
    };
    let tenants: Vec<String> = (0..tenant_count)
        .map(|t| {
            if t == 0 {
                TENANT.to_string()
            } else {
                format!("{TENANT}_{t}")
            }
        })
        .collect();
    let state_cache_bytes = env_u64("LEDGER_BENCH_STATE_CACHE_MB")
        .map_or(storage::DEFAULT_STATE_CACHE_BYTES, |mb| {
            usize::try_from(mb << 20).unwrap()
        });
    let index_generation_entries = env_u64("LEDGER_BENCH_GENERATION_ENTRIES")
        .unwrap_or(StoreOptions::default().index_generation_entries);
    // Nodes seal entries at rest (storage::at_rest); LEDGER_BENCH_AT_REST=0 measures a store
    // that keeps them in clear, for the comparison.
    let at_rest_key = (env_u64("LEDGER_BENCH_AT_REST") != Some(0)).then(|| {
        std::sync::Arc::new(storage::at_rest::AtRestKey::derive(b"ledger bench cluster").unwrap())
    });
    let opened = Instant::now();
    let (log, sm) = storage::open_with(
        &dir,
        &StoreOptions {
            state_cache_bytes,
            index_generation_entries,
            at_rest_key: at_rest_key.clone(),
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let held = sm.view().entry_counts().0;
    // A kept store also holds the entries earlier runs' append timings added.
    if held >= n {
        // Opening converts a store of an older format, so this also times a conversion.
        eprintln!(
            "reusing the {n} entries in {} (opened in {:.1?})",
            dir.display(),
            opened.elapsed()
        );
        drop((log, sm));
    } else {
        assert_eq!(held, 0, "{} holds another ledger: remove it", dir.display());
        drop(log);
        fill(sm, n, &tenants, &dir);
    }

    // Reopen, as a restarted node would: opening loads tree nodes into memory.
    print_table_stats(&dir.join("state.redb"), n);
    let leaf_hash_cache_bytes = env_u64("LEDGER_BENCH_LEAF_CACHE_MB").map_or(n * 32, |mb| mb << 20);
    if env_u64("LEDGER_BENCH_DROP_CACHES") == Some(1) {
        drop_page_cache();
    }
    let reopened = Instant::now();
    let (_log, mut sm) = storage::open_with(
        &dir,
        &StoreOptions {
            leaf_hash_cache_bytes,
            state_cache_bytes,
            index_generation_entries,
            at_rest_key,
        },
    )
    .unwrap();
    let view = sm.view();
    eprintln!("reopened in {:.1?}", reopened.elapsed());
    time_proofs_while_loading(&view);
    view.wait_tree_nodes_loaded();
    let cached = view.cached_tree_nodes();
    eprintln!(
        "tree nodes loaded in the background {:.1?} after the open: {} upper tree nodes, {} leaf hashes ({:.0} MiB)",
        reopened.elapsed(),
        cached.upper,
        cached.leaves,
        (cached.upper + cached.leaves) as f64 * 32.0 / (1024.0 * 1024.0)
    );
    time_appends(&mut sm);
    if let Some(idle) = env_u64("LEDGER_BENCH_IDLE_SECS") {
        eprintln!("idle for {idle} s before timing");
        std::thread::sleep(std::time::Duration::from_secs(idle));
    }
    let tree = view.tree(TENANT).unwrap();
    let size = tree.size();
    let mut rng = rand::thread_rng();
    let mut group = c.benchmark_group(format!("proofs at {size} entries"));
    group.bench_function("inclusion proof (random index, full tree)", |b| {
        b.iter(|| {
            let i = rng.gen_range(0..size);
            black_box(tree.inclusion_proof(i, size).unwrap())
        })
    });
    group.bench_function("consistency proof (random old size)", |b| {
        b.iter(|| {
            let old = rng.gen_range(1..size);
            black_box(tree.consistency_proof(old, size).unwrap())
        })
    });
    // A receipt proves the newest entry against a checkpoint that usually ends mid-block,
    // whose levels 1–4 are recomputed from that block's leaf hashes (not stored since format 4).
    group.bench_function("receipt proof (newest entry, size ending mid-block)", |b| {
        b.iter(|| {
            let s = size - rng.gen_range(0..32.min(size - 1));
            black_box(tree.inclusion_proof(s - 1, s).unwrap())
        })
    });
    group.bench_function("root at a size ending mid-block", |b| {
        b.iter(|| {
            let s = size - rng.gen_range(0..32.min(size - 1));
            black_box(tree.root_at(s).unwrap())
        })
    });
    group.bench_function("entry read + leaf check", |b| {
        b.iter(|| {
            let i = rng.gen_range(0..size);
            black_box(tree.entry(i).unwrap())
        })
    });
    // Without the leaf hashes in memory, a proof's lowest siblings come from one range read
    // of its 32-leaf block; with nothing in memory, from point reads of every node.
    view.forget_cached_leaf_hashes();
    group.bench_function("inclusion proof, leaf hashes read from the store", |b| {
        b.iter(|| {
            let i = rng.gen_range(0..size);
            black_box(tree.inclusion_proof(i, size).unwrap())
        })
    });
    view.forget_cached_tree_nodes();
    group.bench_function("inclusion proof, every node read from the store", |b| {
        b.iter(|| {
            let i = rng.gen_range(0..size);
            black_box(tree.inclusion_proof(i, size).unwrap())
        })
    });
    group.finish();
}

/// Times appends to the first tenant in transactions as small as a loaded cluster applies
/// them (`LEDGER_BENCH_APPEND_BATCH`, default 64), with random request ids as clients send:
/// each entry inserts a random key into the leaf-hash and the request-id index. Their pages
/// are read through redb's cache (`LEDGER_BENCH_STATE_CACHE_MB`), empty after the reopen, so
/// `LEDGER_BENCH_APPENDS` entries (default 200,000; 0 skips), appended to the store, are
/// reported per 20,000: the later rounds show a node in service. A kept store grows by them.
fn time_appends(sm: &mut LedgerStateMachine) {
    const ROUND: u64 = 20_000;
    let total = env_u64("LEDGER_BENCH_APPENDS").unwrap_or(200_000);
    let batch = env_u64("LEDGER_BENCH_APPEND_BATCH").unwrap_or(64).max(1);
    let view = sm.view();
    let info = view.tenant(TENANT).unwrap().unwrap();
    let mut rng = rand::thread_rng();
    // Past any Raft index the fill used.
    let mut raft_index = 1 << 40;
    let mut next = info.size;
    let mut appended = 0u64;
    while appended < total {
        let round = ROUND.min(total - appended);
        let at = next;
        let mut transactions = Vec::new();
        let mut done = 0;
        while done < round {
            let count = batch.min(round - done);
            let entries = (next..next + count)
                .map(|i| {
                    let request_id = format!("{:032x}", rng.r#gen::<u128>());
                    bench_request(TENANT, i, request_id, &info.registrar_key_id)
                })
                .collect();
            let started = Instant::now();
            sm.apply_entries(vec![entry(
                raft_index,
                LedgerCommand::AppendBatch { entries },
            )])
            .unwrap();
            transactions.push(started.elapsed());
            raft_index += 1;
            next += count;
            done += count;
        }
        appended += round;
        let sum: std::time::Duration = transactions.iter().sum();
        transactions.sort_unstable();
        let p99 = transactions[(transactions.len() * 99 / 100).min(transactions.len() - 1)];
        eprintln!(
            "appended {round} entries at {at} in transactions of {batch}: {:.1} µs per entry \
             ({:.0} entries/s), p50 {:.2?} / p99 {p99:.2?} per transaction",
            sum.as_secs_f64() * 1e6 / round as f64,
            round as f64 / sum.as_secs_f64(),
            transactions[transactions.len() / 2],
        );
    }
}

/// The registrar's submission number `i` to `tenant`: a ~256-byte payload and a dummy
/// signature (applies do not check signatures; the leader does before proposing).
fn bench_request(tenant: &str, i: u64, request_id: String, key_id: &str) -> AppendRequest {
    AppendRequest {
        tenant: tenant.into(),
        kind: "record.anchored".into(),
        submitter: REGISTRAR.into(),
        request_id,
        key_id: key_id.into(),
        payload: format!(
            "{{\"content_hash\":\"{:064x}\",\"record\":\"rec_{i:032x}\",\"pad\":\"{}\"}}",
            i,
            "x".repeat(120)
        )
        .into_bytes(),
        signature: vec![0x5a; 64],
        timestamp_ms: 1_700_000_000_000 + i,
    }
}

/// Applies `n` entries spread over `tenants` straight to the state machine.
fn fill(mut sm: LedgerStateMachine, n: u64, tenants: &[String], dir: &std::path::Path) {
    let registrar = SigningKey::generate(SignatureAlgorithm::Ed25519).unwrap();
    let key_id = registrar.key_id().to_hex();
    let mut raft_index = 1;
    for tenant in tenants {
        sm.apply_entries(vec![entry(
            raft_index,
            LedgerCommand::RegisterTenant(TenantSpec {
                tenant: tenant.clone(),
                suite: Suite::Intl,
                origin: format!("caretrail.bench/{tenant}"),
                checkpoint_key: String::new(),
                registrar_key: registrar.public_key().to_spki_pem(),
            }),
        )])
        .unwrap();
        raft_index += 1;
    }
    let started = Instant::now();
    let mut appended = 0u64;
    while appended < n {
        let batch = (n - appended).min(2_000);
        let entries = (appended..appended + batch)
            .map(|i| {
                let tenant = &tenants[(i % tenants.len() as u64) as usize];
                bench_request(tenant, i, format!("r{i}"), &key_id)
            })
            .collect();
        sm.apply_entries(vec![entry(
            raft_index,
            LedgerCommand::AppendBatch { entries },
        )])
        .unwrap();
        raft_index += 1;
        appended += batch;
    }
    let fill = started.elapsed();
    let bytes = std::fs::metadata(dir.join("state.redb")).unwrap().len();
    eprintln!(
        "filled {n} entries ({} tenants) in {fill:.1?} ({:.0} entries/s applied); state.redb {:.1} MiB = {:.0} bytes/entry",
        tenants.len(),
        n as f64 / fill.as_secs_f64(),
        bytes as f64 / (1024.0 * 1024.0),
        bytes as f64 / n as f64
    );
}

/// Where the state's bytes go: pages and stored bytes per entry of each table (the tenants'
/// entries tables and the index generations summed).
fn print_table_stats(path: &std::path::Path, n: u64) {
    use redb::{ReadableDatabase, ReadableTableMetadata, TableHandle, TableStats};
    let db = redb::Database::open(path).unwrap();
    let txn = db.begin_read().unwrap();
    let per = |x: u64| x as f64 / n as f64;
    let report = |name: &str, stats: &[TableStats]| {
        let sum = |f: fn(&TableStats) -> u64| stats.iter().map(f).sum::<u64>();
        let pages = sum(|s| s.leaf_pages() + s.branch_pages());
        eprintln!(
            "  {name:<9} {:>6.0} B/entry in pages ({pages} pages in {} tables, height {}), \
             stored {:.0} B/entry, metadata {:.0}, fragmented {:.0}",
            per(pages * 4096),
            stats.len(),
            stats.iter().map(TableStats::tree_height).max().unwrap_or(0),
            per(sum(TableStats::stored_bytes)),
            per(sum(TableStats::metadata_bytes)),
            per(sum(TableStats::fragmented_bytes)),
        );
    };
    // Tables of one kind share a name prefix: entries_<tenant>, leaves[_<generation>], ...
    let handles: Vec<redb::UntypedTableHandle> = txn.list_tables().unwrap().collect();
    let stats_of = |prefix: &str| -> Vec<TableStats> {
        handles
            .iter()
            .filter(|handle| handle.name().split('_').next() == Some(prefix))
            .map(|handle| {
                let table = txn.open_untyped_table(handle.clone()).unwrap();
                table.stats().unwrap()
            })
            .collect()
    };
    eprintln!("state.redb by table:");
    for kind in ["entries", "nodes", "leaves", "requests"] {
        report(kind, &stats_of(kind));
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50);
    targets = proofs
}
criterion_main!(benches);
