//! Durable ledger storage: openraft's storage conformance suite, crash recovery, idempotent
//! appends, proofs against the offline verifier, snapshots, refusals, tamper detection, and a
//! single-node Raft running on the real storage (group commit).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use std::sync::LazyLock;

use base64::Engine as _;
use caretrail_crypto::{HashValue, SignatureAlgorithm, SigningKey, Suite};
use caretrail_ledger::storage::keys::{self, REGISTRAR};
use caretrail_ledger::storage::{
    self, AppendRequest, Appended, CachedNodes, LedgerCommand, LedgerResponse, LedgerStateMachine,
    LedgerView, LogStore, Refusal, StoreOptions, TenantSpec, TypeConfig,
};
use caretrail_ledger_proofs::{MemoryTree, leaf_hash, verify_consistency, verify_inclusion};
use openraft::error::{InstallSnapshotError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::storage::{RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite as RaftSuite};
use openraft::{
    BasicNode, CommittedLeaderId, EntryPayload, LogId, Raft, RaftLogReader, RaftSnapshotBuilder,
    ServerState, StorageError, StorageIOError,
};
use tempfile::TempDir;
use tokio::io::AsyncWriteExt;

type RaftEntry = openraft::Entry<TypeConfig>;

// ---------------------------------------------------------------------------------------------
// helpers

fn log_id(index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

fn normal(index: u64, cmd: LedgerCommand) -> RaftEntry {
    openraft::Entry {
        log_id: log_id(index),
        payload: EntryPayload::Normal(cmd),
    }
}

fn register(tenant: &str, suite: Suite) -> LedgerCommand {
    LedgerCommand::RegisterTenant(TenantSpec {
        tenant: tenant.into(),
        suite,
        origin: format!("caretrail.test/{tenant}"),
        checkpoint_key: String::new(),
        registrar_key: REGISTRAR_KEY.public_key().to_spki_pem(),
    })
}

pub(crate) fn request(
    tenant: &str,
    submitter: &str,
    request_id: &str,
    payload: &[u8],
) -> AppendRequest {
    AppendRequest {
        tenant: tenant.into(),
        kind: "record.anchored".into(),
        submitter: submitter.into(),
        request_id: request_id.into(),
        key_id: key_of(submitter).key_id().to_hex(),
        payload: payload.to_vec(),
        signature: vec![0x5a; 64],
        timestamp_ms: 1_700_000_000_000,
    }
}

/// Signs the key entries; storage tests also submit their entries as the registrar (signatures
/// are checked before proposing, not by the state machine, so they are not real here).
static REGISTRAR_KEY: LazyLock<SigningKey> =
    LazyLock::new(|| SigningKey::generate(SignatureAlgorithm::Ed25519).unwrap());
/// The key of every other submitter in these tests.
static INSTITUTION_KEY: LazyLock<SigningKey> =
    LazyLock::new(|| SigningKey::generate(SignatureAlgorithm::Sm2).unwrap());

fn key_of(submitter: &str) -> &'static SigningKey {
    if submitter == REGISTRAR {
        &REGISTRAR_KEY
    } else {
        &INSTITUTION_KEY
    }
}

/// A registrar entry registering `INSTITUTION_KEY` for `institution`.
fn key_registration(tenant: &str, institution: &str) -> AppendRequest {
    let key = INSTITUTION_KEY.public_key();
    let payload = serde_json::to_vec(&keys::KeyRegistration {
        institution: institution.into(),
        key_id: key.key_id().to_hex(),
        algorithm: key.algorithm().as_str().into(),
        public_key: base64::engine::general_purpose::STANDARD.encode(key.to_spki_der()),
    })
    .unwrap();
    AppendRequest {
        kind: keys::KIND_KEY_REGISTERED.into(),
        payload,
        ..request(tenant, REGISTRAR, &format!("key-{institution}"), b"")
    }
}

fn batch(entries: Vec<AppendRequest>) -> LedgerCommand {
    LedgerCommand::AppendBatch { entries }
}

/// A node's storage driven directly: every command goes through the log, then the state
/// machine, as Raft would do it on a single node.
pub(crate) struct Node {
    log: LogStore,
    pub(crate) sm: LedgerStateMachine,
    next: u64,
}

impl Node {
    pub(crate) fn open(dir: &Path) -> Self {
        Self::open_with(dir, &StoreOptions::default())
    }

    pub(crate) fn open_with(dir: &Path, options: &StoreOptions) -> Self {
        let (log, sm) = storage::open_with(dir, options).unwrap();
        let next = log.log_state().last_log_id.map_or(1, |l| l.index + 1);
        Self { log, sm, next }
    }

    pub(crate) fn view(&self) -> LedgerView {
        self.sm.view()
    }

    async fn propose_many(&mut self, cmds: Vec<LedgerCommand>) -> Vec<LedgerResponse> {
        let entries: Vec<RaftEntry> = cmds
            .into_iter()
            .map(|c| {
                let e = normal(self.next, c);
                self.next += 1;
                e
            })
            .collect();
        self.log.blocking_append(entries.clone()).await.unwrap();
        self.sm.apply(entries).await.unwrap()
    }

    async fn propose(&mut self, cmd: LedgerCommand) -> LedgerResponse {
        self.propose_many(vec![cmd]).await.pop().unwrap()
    }

    pub(crate) async fn append(
        &mut self,
        entries: Vec<AppendRequest>,
    ) -> Vec<Result<Appended, Refusal>> {
        match self.propose(batch(entries)).await {
            LedgerResponse::Appended(r) => r,
            other => panic!("unexpected response {other:?}"),
        }
    }

    /// Re-applies the log after the state's last applied id, as a single node would once it
    /// commits again: at start openraft re-applies up to the saved commit index, the rest once
    /// a leader commits (on this single node every logged entry is committed). Returns how many
    /// it re-applied.
    async fn reapply_log(&mut self) -> u64 {
        let (applied, _) = self.sm.applied().unwrap();
        let from = applied.map_or(1, |l| l.index + 1);
        let Some(last) = self.log.log_state().last_log_id else {
            return 0;
        };
        if from > last.index {
            return 0;
        }
        let entries = self
            .log
            .try_get_log_entries(from..=last.index)
            .await
            .unwrap();
        let n = entries.len() as u64;
        self.sm.apply(entries).await.unwrap();
        n
    }

    pub(crate) async fn register(&mut self, tenant: &str, suite: Suite) {
        match self.propose(register(tenant, suite)).await {
            LedgerResponse::Tenant(Ok(r)) => assert!(r.created),
            other => panic!("unexpected response {other:?}"),
        }
    }
}

/// Everything observable about the ledger state, for before/after comparisons.
#[derive(Debug, PartialEq)]
struct Observed {
    tenants: Vec<storage::TenantInfo>,
    roots: Vec<(String, Vec<HashValue>)>,
    entries: Vec<(String, Vec<Vec<u8>>)>,
    proofs: Vec<(String, Vec<Vec<HashValue>>)>,
}

fn observe(view: &LedgerView) -> Observed {
    let tenants = view.tenants().unwrap();
    let mut roots = Vec::new();
    let mut entries = Vec::new();
    let mut proofs = Vec::new();
    for t in &tenants {
        let tree = view.tree(&t.tenant).unwrap();
        let size = tree.size();
        roots.push((
            t.tenant.clone(),
            (0..=size).map(|s| tree.root_at(s).unwrap()).collect(),
        ));
        entries.push((
            t.tenant.clone(),
            (0..size).map(|i| tree.entry_bytes(i).unwrap()).collect(),
        ));
        proofs.push((
            t.tenant.clone(),
            (0..size)
                .map(|i| tree.inclusion_proof(i, size).unwrap())
                .chain((0..=size).map(|s| tree.consistency_proof(s, size).unwrap()))
                .collect(),
        ));
    }
    Observed {
        tenants,
        roots,
        entries,
        proofs,
    }
}

// ---------------------------------------------------------------------------------------------
// openraft conformance

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, LedgerStateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, LedgerStateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().map_err(|e| StorageIOError::<u64>::write(&e))?;
        let (log, sm) = storage::open(dir.path()).map_err(|e| StorageIOError::<u64>::write(&e))?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite_passes() {
    RaftSuite::test_all(Builder).unwrap();
}

// ---------------------------------------------------------------------------------------------
// durability

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_after_drop_keeps_entries_roots_and_proofs() {
    let dir = tempfile::tempdir().unwrap();
    let before;
    let log_before;
    {
        let mut node = Node::open(dir.path());
        node.register("ten_a", Suite::Intl).await;
        node.register("ten_b", Suite::Gm).await;
        for round in 0..12u32 {
            let mut reqs = Vec::new();
            for j in 0..=round % 5 {
                let tenant = if j % 2 == 0 { "ten_a" } else { "ten_b" };
                reqs.push(request(
                    tenant,
                    REGISTRAR,
                    &format!("r-{round}-{j}"),
                    format!("payload {round}/{j}").as_bytes(),
                ));
            }
            for r in node.append(reqs).await {
                r.unwrap();
            }
        }
        before = observe(&node.view());
        log_before = node.log.log_state();
        assert!(before.tenants.iter().all(|t| t.size > 0));
        // No clean shutdown: the handles are simply dropped.
    }
    let mut node = Node::open(dir.path());
    assert_eq!(observe(&node.view()), before);
    assert_eq!(node.log.log_state(), log_before);
    let (applied, _) = node.sm.applied().unwrap();
    assert_eq!(applied, log_before.last_log_id);
    let last = log_before.last_log_id.unwrap().index;
    let entries = node.log.try_get_log_entries(1..=last).await.unwrap();
    assert_eq!(entries.len() as u64, last);
    assert!(node.view().verify_store().unwrap().is_ok());

    // Appends continue where they stopped.
    let size = node.view().tenant("ten_a").unwrap().unwrap().size;
    let r = node
        .append(vec![request("ten_a", REGISTRAR, "after", b"after")])
        .await;
    assert_eq!(r[0].as_ref().unwrap().index, size);
}

const CRASH_DIR: &str = "CARETRAIL_LEDGER_CRASH_DIR";

/// Child half of `kill_during_appends_loses_no_acknowledged_entry`: appends until the process
/// aborts itself mid-stream, printing each acknowledged (durable) entry. Does nothing when run
/// as a normal test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child() {
    let Ok(dir) = std::env::var(CRASH_DIR) else {
        return;
    };
    let mut node = Node::open(Path::new(&dir));
    node.register("ten_crash", Suite::Intl).await;
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_millis(600));
        std::process::abort();
    });
    for round in 0u64.. {
        let reqs = (0..8)
            .map(|j| {
                request(
                    "ten_crash",
                    REGISTRAR,
                    &format!("r{round}-{j}"),
                    format!("{round}/{j}").as_bytes(),
                )
            })
            .collect();
        for r in node.append(reqs).await {
            let a = r.unwrap();
            println!("ACK {} {}", a.index, a.leaf_hash().to_hex());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_appends_loses_no_acknowledged_entry() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "storage::crash_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_DIR, dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success(), "the child must have aborted");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let acked: Vec<(u64, String)> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("ACK "))
        .map(|l| {
            let (i, h) = l.split_once(' ').unwrap();
            (i.parse().unwrap(), h.to_string())
        })
        .collect();
    assert!(
        acked.len() > 8,
        "the child acknowledged too little: {stdout}"
    );
    eprintln!(
        "the child acknowledged {} entries before it aborted",
        acked.len()
    );

    // The state commits without fsync between durable points, so it may reopen behind the
    // log; it must be consistent as it is, and complete once the log is re-applied.
    let mut node = Node::open(dir.path());
    let report = node.view().verify_store().unwrap();
    assert!(report.is_ok(), "{report:?}");
    let reapplied = node.reapply_log().await;
    eprintln!("{reapplied} Raft entries re-applied from the log after the crash");
    let report = node.view().verify_store().unwrap();
    assert!(report.is_ok(), "{report:?}");
    let tree = node.view().tree("ten_crash").unwrap();
    assert!(tree.size() >= acked.len() as u64);
    for (index, hash) in &acked {
        assert_eq!(&tree.leaf_hash(*index).unwrap().to_hex(), hash);
    }
    // The Raft log is intact and at least as far as the state machine.
    let (applied, _) = node.sm.applied().unwrap();
    assert!(node.log.log_state().last_log_id >= applied);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_queued_together_share_one_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::open(dir.path());
    let before = node.log.stats();
    const CALLS: u64 = 200;
    let mut pending = Vec::new();
    for i in 1..=CALLS {
        let entries = (0..3)
            .map(|j| normal(i * 3 + j, batch(vec![])))
            .collect::<Vec<_>>();
        pending.push(node.log.append_queued(entries).unwrap());
    }
    // Everything queued is readable before it is durable.
    assert_eq!(
        node.log
            .try_get_log_entries(3..CALLS * 3 + 3)
            .await
            .unwrap()
            .len() as u64,
        CALLS * 3
    );
    for rx in pending {
        rx.await.unwrap().unwrap();
    }
    let stats = node.log.stats();
    let commits = stats.durable_commits - before.durable_commits;
    assert_eq!(stats.append_calls - before.append_calls, CALLS);
    assert_eq!(stats.entries - before.entries, CALLS * 3);
    eprintln!("{CALLS} queued appends: {commits} fsyncs");
    assert!(
        commits * 4 <= CALLS,
        "{CALLS} queued appends took {commits} fsyncs: {stats:?}"
    );
    drop(node);
    let node = Node::open(dir.path());
    assert_eq!(
        node.log.log_state().last_log_id.unwrap().index,
        CALLS * 3 + 2
    );
}

// ---------------------------------------------------------------------------------------------
// state machine semantics

#[tokio::test]
async fn duplicate_request_id_returns_the_original_entry() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::open(dir.path());
    node.register("ten_a", Suite::Intl).await;

    let first = node
        .append(vec![request("ten_a", REGISTRAR, "req-1", b"one")])
        .await
        .remove(0)
        .unwrap();
    assert!(!first.duplicate);
    assert_eq!(first.index, 0);

    // Retry (even with another signature) returns the original, appends nothing.
    let mut retry = request("ten_a", REGISTRAR, "req-1", b"one");
    retry.signature = vec![1; 70];
    retry.timestamp_ms += 5;
    let again = node.append(vec![retry]).await.remove(0).unwrap();
    assert!(again.duplicate);
    assert_eq!(again.index, first.index);
    assert_eq!(again.leaf_hash, first.leaf_hash);
    assert_eq!(node.view().tenant("ten_a").unwrap().unwrap().size, 1);

    // The same id for other content is refused.
    let conflict = node
        .append(vec![request("ten_a", REGISTRAR, "req-1", b"other")])
        .await
        .remove(0);
    assert!(matches!(
        conflict,
        Err(Refusal::RequestIdConflict { index: 0, .. })
    ));

    // Within one batch: the second copy is a duplicate of the first.
    let results = node
        .append(vec![
            request("ten_a", REGISTRAR, "req-2", b"two"),
            request("ten_a", REGISTRAR, "req-2", b"two"),
            key_registration("ten_a", "ins_2"),
            // Another submitter may use the same id.
            request("ten_a", "ins_2", "req-2", b"two"),
            // No request id: never deduplicated.
            request("ten_a", REGISTRAR, "", b"anon"),
            request("ten_a", REGISTRAR, "", b"anon"),
        ])
        .await;
    let results: Vec<Appended> = results.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        results
            .iter()
            .map(|a| (a.index, a.duplicate))
            .collect::<Vec<_>>(),
        vec![
            (1, false),
            (1, true),
            (2, false),
            (3, false),
            (4, false),
            (5, false)
        ]
    );
    let tree = node.view().tree("ten_a").unwrap();
    assert_eq!(tree.size(), 6);
    assert_eq!(tree.index_of_request(REGISTRAR, "req-2").unwrap(), Some(1));
    assert_eq!(tree.index_of_request("ins_2", "req-2").unwrap(), Some(3));
    assert_eq!(tree.index_of_request("ins_3", "req-2").unwrap(), None);
}

#[tokio::test]
async fn unknown_tenant_and_invalid_entries_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::open(dir.path());
    node.register("ten_a", Suite::Intl).await;

    let mut bad_kind = request("ten_a", REGISTRAR, "r2", b"x");
    bad_kind.kind = "Record Anchored".into();
    let mut too_big = request("ten_a", REGISTRAR, "r3", b"x");
    too_big.signature = vec![0; 4096];
    let results = node
        .append(vec![
            request("ten_nope", REGISTRAR, "r1", b"x"),
            bad_kind,
            request("ten_a", REGISTRAR, "ok", b"fine"),
            too_big,
        ])
        .await;
    assert!(matches!(&results[0], Err(Refusal::UnknownTenant { tenant }) if tenant == "ten_nope"));
    assert!(matches!(&results[1], Err(Refusal::InvalidEntry { .. })));
    assert_eq!(results[2].as_ref().unwrap().index, 0);
    assert!(matches!(&results[3], Err(Refusal::InvalidEntry { .. })));

    let view = node.view();
    assert_eq!(view.tenants().unwrap().len(), 1);
    assert!(view.tenant("ten_nope").unwrap().is_none());
    assert_eq!(view.tenant("ten_a").unwrap().unwrap().size, 1);
    assert!(matches!(
        view.tree("ten_nope"),
        Err(storage::StoreError::UnknownTenant(_))
    ));

    // Registering again: same suite is a no-op, another suite is refused.
    match node.propose(register("ten_a", Suite::Intl)).await {
        LedgerResponse::Tenant(Ok(r)) => assert!(!r.created),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        node.propose(register("ten_a", Suite::Gm)).await,
        LedgerResponse::Tenant(Err(Refusal::TenantSuiteConflict {
            existing: Suite::Intl,
            ..
        }))
    ));
    assert!(matches!(
        node.propose(register("bad\ntenant", Suite::Gm)).await,
        LedgerResponse::Tenant(Err(Refusal::InvalidTenant { .. }))
    ));
    assert!(view.verify_store().unwrap().is_ok());
}

// ---------------------------------------------------------------------------------------------
// proofs

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proofs_from_the_store_verify_for_many_sizes_and_both_suites() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::open(dir.path());
    const SMALL: u64 = 70;
    for suite in Suite::ALL {
        let tenant = format!("ten_{suite}");
        node.register(&tenant, suite).await;
        // Batches of growing size, so entries are spread over several transactions.
        let mut n = 0u64;
        let mut width = 1;
        while n < SMALL {
            let reqs = (n..(n + width).min(SMALL))
                .map(|i| request(&tenant, REGISTRAR, &format!("r{i}"), &i.to_be_bytes()))
                .collect::<Vec<_>>();
            n += reqs.len() as u64;
            node.append(reqs).await;
            width += 1;
        }
        let tree = node.view().tree(&tenant).unwrap();
        assert_eq!(tree.size(), SMALL);
        let leaves: Vec<HashValue> = (0..SMALL).map(|i| tree.leaf_hash(i).unwrap()).collect();
        for (i, leaf) in leaves.iter().enumerate() {
            let entry = tree.entry(i as u64).unwrap();
            assert_eq!(entry.index, i as u64);
            assert_eq!(entry.tenant, tenant);
            assert_eq!(*leaf, leaf_hash(suite, &entry.encode().unwrap()));
            assert_eq!(tree.index_of_leaf(leaf).unwrap(), Some(i as u64));
        }
        let memory = MemoryTree::from_leaf_hashes(suite, &leaves).unwrap();
        for size in 0..=SMALL {
            let root = tree.root_at(size).unwrap();
            assert_eq!(root, memory.root_at(size).unwrap(), "root at {size}");
            for index in 0..size {
                let proof = tree.inclusion_proof(index, size).unwrap();
                assert_eq!(proof, memory.inclusion_proof(index, size).unwrap());
                verify_inclusion(&leaves[index as usize], index, size, &proof, &root).unwrap();
                if size > 1 {
                    let other = (index + 1) % size;
                    assert!(
                        verify_inclusion(&leaves[other as usize], index, size, &proof, &root)
                            .is_err()
                    );
                }
            }
            for old in 0..=size {
                let old_root = tree.root_at(old).unwrap();
                let proof = tree.consistency_proof(old, size).unwrap();
                assert_eq!(proof, memory.consistency_proof(old, size).unwrap());
                verify_consistency(old, size, &old_root, &root, &proof).unwrap();
            }
        }
        let (index, proof) = tree.inclusion_proof_by_leaf(&leaves[33], SMALL).unwrap();
        assert_eq!(index, 33);
        verify_inclusion(&leaves[33], 33, SMALL, &proof, &tree.root().unwrap()).unwrap();
        // Sizes beyond the tree are refused.
        assert!(tree.root_at(SMALL + 1).is_err());
        assert!(tree.inclusion_proof(0, SMALL + 1).is_err());
        assert!(tree.consistency_proof(1, SMALL + 1).is_err());
    }

    // A larger tree, checked around the power-of-two boundaries.
    let tenant = "ten_large";
    node.register(tenant, Suite::Gm).await;
    for chunk in 0..10u64 {
        let reqs = (chunk * 103..(chunk + 1) * 103)
            .map(|i| request(tenant, REGISTRAR, &format!("r{i}"), &i.to_be_bytes()))
            .collect();
        node.append(reqs).await;
    }
    let tree = node.view().tree(tenant).unwrap();
    let size = tree.size();
    assert_eq!(size, 1030);
    let leaves: Vec<HashValue> = (0..size)
        .map(|i| leaf_hash(Suite::Gm, &tree.entry_bytes(i).unwrap()))
        .collect();
    let memory = MemoryTree::from_leaf_hashes(Suite::Gm, &leaves).unwrap();
    // Leaf hashes and levels ≥ 5 are kept in memory, extended as entries are applied and
    // loaded again at open; lower nodes of complete 32-leaf blocks are recomputed from their
    // leaf hashes. Wherever the nodes come from, the proofs must be those of the in-memory
    // reference tree.
    let check_proofs = |view: &LedgerView| {
        let tree = view.tree(tenant).unwrap();
        for s in [
            1, 2, 255, 256, 257, 511, 512, 513, 1000, 1023, 1024, 1025, 1030,
        ] {
            let root = tree.root_at(s).unwrap();
            assert_eq!(root, memory.root_at(s).unwrap());
            for index in [0, 31, 32, s / 3, s / 2, s - 1] {
                let index = index.min(s - 1);
                let proof = tree.inclusion_proof(index, s).unwrap();
                assert_eq!(proof, memory.inclusion_proof(index, s).unwrap());
                verify_inclusion(&leaves[index as usize], index, s, &proof, &root).unwrap();
            }
            for old in [1, s / 2, s - 1, s] {
                let proof = tree.consistency_proof(old, s).unwrap();
                assert_eq!(proof, memory.consistency_proof(old, s).unwrap());
                verify_consistency(old, s, &tree.root_at(old).unwrap(), &root, &proof).unwrap();
            }
        }
        for index in [0, 500, 1029] {
            assert_eq!(tree.leaf_hash(index).unwrap(), leaves[index as usize]);
            tree.entry(index).unwrap();
        }
    };
    // Levels ≥ 5: 2 + 1 for each 70-entry tenant and 32 + 16 + 8 + 4 + 2 + 1 for the
    // 1030-entry one; every leaf hash (well within the default budget).
    let all = CachedNodes {
        upper: 2 * 3 + 63,
        leaves: 2 * SMALL + 1030,
    };
    let view = node.view();
    assert_eq!(view.cached_tree_nodes(), all, "extended by the applies");
    check_proofs(&view);
    view.forget_cached_leaf_hashes();
    assert_eq!(view.cached_tree_nodes().leaves, 0);
    check_proofs(&view);
    view.forget_cached_tree_nodes();
    assert_eq!(view.cached_tree_nodes(), CachedNodes::default());
    check_proofs(&view);
    view.reload_cached_tree_nodes();
    assert_eq!(view.cached_tree_nodes(), all, "loaded from the store");
    check_proofs(&view);
    assert!(view.verify_store().unwrap().is_ok());

    // Opening the store loads them too. A budget of 640 leaf hashes takes the two 70-entry
    // tenants' and the first 500 of the large one's: its block 480..512 is then partly in
    // memory and is read from the store, and later appends are left to the store.
    drop((tree, view, node));
    let node = Node::open(dir.path());
    // Proofs are served while the nodes load in the background.
    check_proofs(&node.view());
    node.view().wait_tree_nodes_loaded();
    assert_eq!(node.view().cached_tree_nodes(), all);
    drop(node);
    let mut node = Node::open_with(
        dir.path(),
        &StoreOptions {
            leaf_hash_cache_bytes: 640 * 32,
            ..StoreOptions::default()
        },
    );
    let view = node.view();
    view.wait_tree_nodes_loaded();
    assert!(!view.loading_tree_nodes());
    assert_eq!(
        view.cached_tree_nodes(),
        CachedNodes {
            upper: all.upper,
            leaves: 640
        }
    );
    check_proofs(&view);
    node.append(vec![request(tenant, REGISTRAR, "r-late", b"late")])
        .await;
    assert_eq!(view.cached_tree_nodes().leaves, 640);
    let tree = view.tree(tenant).unwrap();
    let late = tree.entry(1030).unwrap();
    assert_eq!(late.payload, b"late");
    let mut grown = leaves.clone();
    grown.push(leaf_hash(Suite::Gm, &tree.entry_bytes(1030).unwrap()));
    let grown_memory = MemoryTree::from_leaf_hashes(Suite::Gm, &grown).unwrap();
    for size in [500, 501, 512, 1031] {
        let root = grown_memory.root_at(size).unwrap();
        assert_eq!(tree.root_at(size).unwrap(), root);
        for index in [0, 479, 480, 499, 500, 511, 1029, 1030] {
            if index >= size {
                continue;
            }
            let proof = tree.inclusion_proof(index, size).unwrap();
            assert_eq!(proof, grown_memory.inclusion_proof(index, size).unwrap());
            verify_inclusion(&grown[index as usize], index, size, &proof, &root).unwrap();
        }
        for old in [1, 497, 500, 503, size] {
            if old > size {
                continue;
            }
            assert_eq!(
                tree.consistency_proof(old, size).unwrap(),
                grown_memory.consistency_proof(old, size).unwrap()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// snapshots

pub(crate) async fn fill(node: &mut Node, tenants: &[(&str, Suite)], per_tenant: u64) {
    for (tenant, suite) in tenants {
        node.register(tenant, *suite).await;
    }
    for i in 0..per_tenant {
        let reqs = tenants
            .iter()
            .map(|(t, _)| {
                request(
                    t,
                    REGISTRAR,
                    &format!("r{i}"),
                    format!("{t}/{i}").as_bytes(),
                )
            })
            .collect();
        node.append(reqs).await;
    }
}

async fn transfer(from: &mut Node, to: &mut Node) -> Result<(), StorageError<u64>> {
    let mut snap = take_snapshot(from).await;
    let mut rx = to.sm.begin_receiving_snapshot().await.unwrap();
    tokio::io::copy(&mut *snap.snapshot, &mut *rx)
        .await
        .unwrap();
    rx.flush().await.unwrap();
    to.sm.install_snapshot(&snap.meta, rx).await
}

pub(crate) async fn take_snapshot(node: &mut Node) -> openraft::Snapshot<TypeConfig> {
    node.sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap()
}

/// Reads a snapshot's stream (written out from its manifest on the first read).
pub(crate) async fn stream_of(
    snap: &mut openraft::Snapshot<TypeConfig>,
) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut *snap.snapshot, &mut bytes).await?;
    Ok(bytes)
}

/// Installs `bytes` as a received snapshot stream with metadata `meta`.
pub(crate) async fn install_bytes(
    node: &mut Node,
    meta: &storage::types::SnapshotMeta,
    bytes: &[u8],
) -> Result<(), StorageError<u64>> {
    let mut rx = node.sm.begin_receiving_snapshot().await.unwrap();
    rx.write_all(bytes).await.unwrap();
    rx.flush().await.unwrap();
    node.sm.install_snapshot(meta, rx).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_installed_into_another_store_gives_identical_state() {
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let mut a = Node::open(dir_a.path());
    let mut b = Node::open(dir_b.path());
    fill(&mut a, &[("ten_a", Suite::Intl), ("ten_b", Suite::Gm)], 40).await;
    // B is a stale node with other state: the install replaces it whole.
    fill(&mut b, &[("ten_old", Suite::Intl)], 3).await;

    transfer(&mut a, &mut b).await.unwrap();
    let expected = observe(&a.view());
    assert_eq!(observe(&b.view()), expected);
    assert_eq!(a.sm.applied().unwrap(), b.sm.applied().unwrap());
    let current_a = a.sm.get_current_snapshot().await.unwrap().unwrap();
    let current_b = b.sm.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current_a.meta, current_b.meta);
    assert!(b.view().verify_store().unwrap().is_ok());

    // Both continue identically (the rebuilt request-id index included).
    b.next = a.next;
    let more = |i: u64| {
        batch(vec![
            request(
                "ten_a",
                REGISTRAR,
                &format!("r{i}"),
                format!("ten_a/{i}").as_bytes(),
            ),
            request("ten_b", REGISTRAR, "new", b"new"),
        ])
    };
    let ra = a.propose_many(vec![more(5), more(99)]).await;
    let rb = b.propose_many(vec![more(5), more(99)]).await;
    assert_eq!(ra, rb);
    match &ra[0] {
        LedgerResponse::Appended(r) => assert!(r[0].as_ref().unwrap().duplicate),
        other => panic!("{other:?}"),
    }
    assert_eq!(observe(&a.view()), observe(&b.view()));

    // The installed state survives a restart.
    let after = observe(&b.view());
    drop(b);
    let b = Node::open(dir_b.path());
    assert_eq!(observe(&b.view()), after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_is_a_manifest_and_sends_the_state_it_was_taken_at() {
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let mut a = Node::open(dir_a.path());
    let mut b = Node::open(dir_b.path());
    fill(&mut a, &[("ten_a", Suite::Intl), ("ten_b", Suite::Gm)], 30).await;
    let snap = take_snapshot(&mut a).await;
    let at_snapshot = observe(&a.view());
    let manifest = dir_a.path().join("snapshots/current.snap");
    let manifest_len = std::fs::metadata(&manifest).unwrap().len();

    // The ledger grows after the snapshot; the snapshot still holds what it was taken at.
    a.append(vec![
        request("ten_a", REGISTRAR, "later", b"later"),
        request("ten_b", REGISTRAR, "later", b"later"),
    ])
    .await;
    assert_ne!(observe(&a.view()), at_snapshot);
    let mut current = a.sm.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta, snap.meta);
    let stream = stream_of(&mut current).await.unwrap();
    // 60 entries in the stream, none in the manifest; the written-out stream is not kept.
    assert!(manifest_len < 1024, "manifest of {manifest_len} bytes");
    assert!(
        stream.len() as u64 > 8 * manifest_len,
        "stream {} bytes, manifest {manifest_len}",
        stream.len()
    );
    let files: Vec<_> = std::fs::read_dir(dir_a.path().join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(files, vec!["current.snap".to_string()]);

    install_bytes(&mut b, &current.meta, &stream).await.unwrap();
    assert_eq!(observe(&b.view()), at_snapshot);
    assert_eq!(b.sm.applied().unwrap().0, snap.meta.last_log_id);
    // B keeps the snapshot as a manifest of its own state and sends the same bytes on.
    let mut from_b = b.sm.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(from_b.meta, snap.meta);
    let stream_b = stream_of(&mut from_b).await.unwrap();
    assert!(stream_b == stream, "B sends another stream");

    // A node upgraded from a version that stored the whole stream converts it to a manifest.
    drop(a);
    std::fs::write(&manifest, &stream).unwrap();
    std::fs::write(dir_a.path().join("snapshots/current.entries"), "60").unwrap();
    let mut a = Node::open(dir_a.path());
    assert!(std::fs::read(&manifest).unwrap().starts_with(b"CTLSMAN"));
    assert!(!dir_a.path().join("snapshots/current.entries").exists());
    let mut again = a.sm.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(again.meta, snap.meta);
    let stream_again = stream_of(&mut again).await.unwrap();
    assert!(
        stream_again == stream,
        "the converted snapshot sends another stream"
    );

    // The earlier version saved a received stream as current before switching to it: a node
    // that crashed in between finishes the install at open.
    let dir_c = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir_c.path().join("snapshots")).unwrap();
    std::fs::write(dir_c.path().join("snapshots/current.snap"), &stream).unwrap();
    let c = Node::open(dir_c.path());
    assert_eq!(observe(&c.view()), at_snapshot);
    assert_eq!(c.sm.applied().unwrap().0, snap.meta.last_log_id);
    assert!(
        std::fs::read(dir_c.path().join("snapshots/current.snap"))
            .unwrap()
            .starts_with(b"CTLSMAN")
    );
    drop(c);

    // A state behind its snapshot (the file lost) is refused at start, not served.
    drop(b);
    std::fs::remove_file(dir_b.path().join("state.redb")).unwrap();
    let refused = storage::open(dir_b.path()).err().expect("must refuse");
    assert!(
        refused.to_string().contains("behind the current snapshot"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_snapshot_is_refused_and_state_kept() {
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let mut a = Node::open(dir_a.path());
    let mut b = Node::open(dir_b.path());
    fill(&mut a, &[("ten_a", Suite::Intl)], 20).await;
    fill(&mut b, &[("ten_b", Suite::Gm)], 5).await;
    let before = observe(&b.view());

    let mut snap = take_snapshot(&mut a).await;
    let bytes = stream_of(&mut snap).await.unwrap();
    for (what, at) in [("middle", bytes.len() / 2), ("end", bytes.len() - 3)] {
        let mut bad = bytes.clone();
        bad[at] ^= 0x40;
        assert!(
            install_bytes(&mut b, &snap.meta, &bad).await.is_err(),
            "{what}"
        );
        assert_eq!(observe(&b.view()), before, "{what}");
    }
    // Truncated.
    assert!(
        install_bytes(&mut b, &snap.meta, &bytes[..bytes.len() - 40])
            .await
            .is_err()
    );
    assert_eq!(observe(&b.view()), before);
    assert!(b.sm.get_current_snapshot().await.unwrap().is_none());
}

// ---------------------------------------------------------------------------------------------
// tamper detection

pub(crate) fn flip_in_file(path: &Path, marker: &[u8], offset: usize) -> usize {
    let mut bytes = std::fs::read(path).unwrap();
    let mut hits = 0;
    let mut i = 0;
    while i + marker.len() <= bytes.len() {
        if &bytes[i..i + marker.len()] == marker {
            bytes[i + offset] ^= 0x01;
            hits += 1;
            i += marker.len();
        } else {
            i += 1;
        }
    }
    std::fs::write(path, bytes).unwrap();
    hits
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_in_a_stored_entry_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let marker = b"TAMPER-ME-7f3a9c1e55d0";
    {
        let mut node = Node::open(dir.path());
        node.register("ten_a", Suite::Intl).await;
        node.register("ten_b", Suite::Gm).await;
        let reqs = (0..10u64)
            .map(|i| {
                let payload = if i == 6 {
                    marker.to_vec()
                } else {
                    format!("p{i}").into_bytes()
                };
                request("ten_b", REGISTRAR, &format!("r{i}"), &payload)
            })
            .collect();
        node.append(reqs).await;
        node.append(vec![request("ten_a", REGISTRAR, "x", b"x")])
            .await;
        let report = node.view().verify_store().unwrap();
        assert!(report.is_ok(), "{report:?}");
        assert_eq!((report.tenants, report.entries), (2, 11));
        take_snapshot(&mut node).await;
    }
    let hits = flip_in_file(&dir.path().join("state.redb"), marker, 4);
    assert!(hits >= 1);

    let mut node = Node::open(dir.path());
    // The snapshot is sent from the stored entries: the forged one stops it.
    let mut snap = node.sm.get_current_snapshot().await.unwrap().unwrap();
    let refused = stream_of(&mut snap).await.unwrap_err();
    assert!(
        refused.to_string().contains("do not rebuild the snapshot"),
        "{refused}"
    );
    let report = node.view().verify_store().unwrap();
    let mismatch = report.first_mismatch.expect("tampering must be reported");
    assert_eq!(mismatch.tenant, "ten_b");
    assert_eq!(mismatch.index, Some(6));
    assert!(mismatch.problem.contains("leaf hash"), "{mismatch}");
    // The forged entry is not served; its neighbours are.
    let tree = node.view().tree("ten_b").unwrap();
    assert!(matches!(
        tree.entry(6),
        Err(storage::StoreError::Corrupt(_))
    ));
    tree.entry(5).unwrap();
}

/// Format 2 kept every tenant's entries in one table keyed (tenant no, index); format 3 has a
/// table per tenant. A format 2 state is converted when opened; unknown formats are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_format_2_state_is_converted_when_opened() {
    use redb::{ReadableDatabase, ReadableTable};
    type Legacy = redb::TableDefinition<'static, (u32, u64), &'static [u8]>;
    const LEGACY: Legacy = redb::TableDefinition::new("entries");
    let tenants = [("ten_a", Suite::Intl), ("ten_b", Suite::Gm)];
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let mut node = Node::open(dir.path());
        fill(&mut node, &tenants, 45).await;
        // A tenant without entries has no table in either format.
        node.register("ten_empty", Suite::Intl).await;
        tenants.map(|(t, _)| node.view().tree(t).unwrap().root().unwrap())
    };
    let state = dir.path().join("state.redb");
    // Rewrite the state in format 2's layout.
    {
        let db = redb::Database::open(&state).unwrap();
        let txn = db.begin_write().unwrap();
        for no in 0..tenants.len() as u32 {
            let name = format!("entries_{no}");
            let own = redb::TableDefinition::<u64, &[u8]>::new(&name);
            let rows: Vec<(u64, Vec<u8>)> = txn
                .open_table(own)
                .unwrap()
                .iter()
                .unwrap()
                .map(|r| {
                    let (k, v) = r.unwrap();
                    (k.value(), v.value().to_vec())
                })
                .collect();
            assert_eq!(rows.len(), 45);
            let mut legacy = txn.open_table(LEGACY).unwrap();
            for (index, bytes) in rows {
                legacy.insert((no, index), bytes.as_slice()).unwrap();
            }
            drop(legacy);
            assert!(txn.delete_table(own).unwrap());
        }
        set_format(&txn, 2);
        txn.commit().unwrap();
    }
    {
        let mut node = Node::open(dir.path());
        let view = node.view();
        let report = view.verify_store().unwrap();
        assert!(report.is_ok(), "{report:?}");
        assert_eq!(report.entries, 90);
        for ((tenant, _), root) in tenants.iter().zip(&before) {
            let tree = view.tree(tenant).unwrap();
            assert_eq!(tree.root().unwrap(), *root);
            assert_eq!(
                tree.entry(44).unwrap().payload,
                format!("{tenant}/44").as_bytes()
            );
        }
        assert_eq!(view.tree("ten_empty").unwrap().size(), 0);
        let appended = node
            .append(vec![request("ten_a", REGISTRAR, "r-after", b"after")])
            .await;
        assert_eq!(appended[0].as_ref().unwrap().index, 45);
        assert!(view.verify_store().unwrap().is_ok());
        // The converted store sends a snapshot a fresh node installs to the same state.
        let mut snap = take_snapshot(&mut node).await;
        let bytes = stream_of(&mut snap).await.unwrap();
        let other = tempfile::tempdir().unwrap();
        let mut receiver = Node::open(other.path());
        install_bytes(&mut receiver, &snap.meta, &bytes)
            .await
            .unwrap();
        for (tenant, _) in &tenants {
            assert_eq!(
                receiver.view().tree(tenant).unwrap().root().unwrap(),
                view.tree(tenant).unwrap().root().unwrap()
            );
        }
        assert_eq!(receiver.view().tree("ten_empty").unwrap().size(), 0);
        assert!(receiver.view().verify_store().unwrap().is_ok());
    }
    // Converted once: the shared table is gone and the format is recorded.
    {
        let db = redb::Database::open(&state).unwrap();
        let txn = db.begin_read().unwrap();
        assert!(matches!(
            txn.open_table(LEGACY),
            Err(redb::TableError::TableDoesNotExist(_))
        ));
        assert_eq!(stored_format(&txn), [6]);
        assert_eq!(stored_lower_levels(&txn), 0);
    }
    // A format this build does not know is refused, not misread.
    {
        let db = redb::Database::open(&state).unwrap();
        let txn = db.begin_write().unwrap();
        set_format(&txn, 9);
        txn.commit().unwrap();
    }
    let refused = storage::open(dir.path()).err().expect("must refuse");
    assert!(refused.to_string().contains("format 9"), "{refused}");
}

const NODES_TABLE: redb::TableDefinition<(u32, u8, u64), [u8; 32]> =
    redb::TableDefinition::new("nodes");
pub(crate) const META: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("sm_meta");
const REQUEST_FILTERS: redb::TableDefinition<u32, &[u8]> =
    redb::TableDefinition::new("request_filters");

/// Records `format` as the state's layout version (postcard's encoding of a small u32 is the
/// byte itself).
pub(crate) fn set_format(txn: &redb::WriteTransaction, format: u8) {
    let mut meta = txn.open_table(META).unwrap();
    meta.insert("format", [format].as_slice()).unwrap();
}

/// The state's recorded layout version, as stored.
pub(crate) fn stored_format(txn: &redb::ReadTransaction) -> Vec<u8> {
    let meta = txn.open_table(META).unwrap();
    let format = redb::ReadableTable::get(&meta, "format").unwrap().unwrap();
    format.value().to_vec()
}

/// Rows of the `nodes` table at levels 1–4, which format 4 does not store.
fn stored_lower_levels(txn: &redb::ReadTransaction) -> usize {
    use redb::ReadableTable;
    txn.open_table(NODES_TABLE)
        .unwrap()
        .iter()
        .unwrap()
        .filter(|r| (1..5).contains(&r.as_ref().unwrap().0.value().1))
        .count()
}

fn edit_nodes(dir: &Path, edit: impl FnOnce(&mut redb::Table<'_, (u32, u8, u64), [u8; 32]>)) {
    let db = redb::Database::open(dir.join("state.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    edit(&mut txn.open_table(NODES_TABLE).unwrap());
    txn.commit().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_tree_node_is_detected() {
    use redb::ReadableDatabase;
    let dir = tempfile::tempdir().unwrap();
    {
        let mut node = Node::open(dir.path());
        fill(&mut node, &[("ten_a", Suite::Intl)], 40).await;
    }
    {
        let db = redb::Database::open(dir.path().join("state.redb")).unwrap();
        assert_eq!(stored_lower_levels(&db.begin_read().unwrap()), 0);
    }
    // A level-1 node over leaves 2 and 3 is not stored: a row written there is reported, and
    // proofs, which recompute levels 1–4 from the block's leaf hashes, never read it.
    edit_nodes(dir.path(), |nodes| {
        nodes.insert((0, 1, 1), [0xab; 32]).unwrap();
    });
    let node = Node::open(dir.path());
    let m = node.view().verify_store().unwrap().first_mismatch.unwrap();
    assert_eq!((m.tenant.as_str(), m.index), ("ten_a", None));
    assert!(m.problem.contains("tree nodes are stored"), "{m}");
    let tree = node.view().tree("ten_a").unwrap();
    let leaves: Vec<HashValue> = (0..40).map(|i| tree.leaf_hash(i).unwrap()).collect();
    let memory = MemoryTree::from_leaf_hashes(Suite::Intl, &leaves).unwrap();
    for index in [0, 3, 33, 39] {
        assert_eq!(
            tree.inclusion_proof(index, 40).unwrap(),
            memory.inclusion_proof(index, 40).unwrap()
        );
    }
    assert_eq!(tree.root().unwrap(), memory.root_at(40).unwrap());
    drop((tree, node));
    // A stored node rewritten: the level-5 node over leaves 0..32, created by entry 31.
    edit_nodes(dir.path(), |nodes| {
        nodes.remove((0, 1, 1)).unwrap();
        nodes.insert((0, 5, 0), [0xab; 32]).unwrap();
    });
    let node = Node::open(dir.path());
    let m = node.view().verify_store().unwrap().first_mismatch.unwrap();
    assert_eq!((m.tenant.as_str(), m.index), ("ten_a", Some(31)));
    assert!(m.problem.contains("(5, 0)"), "{m}");
}

/// Format 3 stored tree levels 1–4 as well; format 4 recomputes them from leaf hashes. A
/// format 3 state loses those rows when opened and keeps its roots and proofs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_format_3_state_drops_tree_levels_1_to_4_when_opened() {
    use caretrail_ledger_proofs::merkle::node_hash;
    use redb::{ReadableDatabase, ReadableTable};
    let tenants = [("ten_a", Suite::Intl), ("ten_b", Suite::Gm)];
    let dir = tempfile::tempdir().unwrap();
    let roots = {
        let mut node = Node::open(dir.path());
        fill(&mut node, &tenants, 77).await;
        tenants.map(|(t, _)| node.view().tree(t).unwrap().root().unwrap())
    };
    // Add the level 1–4 rows format 3 had (38 + 19 + 9 + 4 per tenant of 77 entries).
    edit_nodes(dir.path(), |nodes| {
        for (no, (_, suite)) in tenants.iter().enumerate() {
            let no = no as u32;
            let mut row: Vec<HashValue> = nodes
                .range((no, 0u8, 0u64)..(no, 1u8, 0u64))
                .unwrap()
                .map(|r| HashValue::new(*suite, r.unwrap().1.value()))
                .collect();
            assert_eq!(row.len(), 77);
            for level in 1..5u8 {
                row = row
                    .chunks_exact(2)
                    .map(|p| node_hash(*suite, &p[0], &p[1]))
                    .collect();
                for (i, h) in row.iter().enumerate() {
                    nodes.insert((no, level, i as u64), *h.as_bytes()).unwrap();
                }
            }
        }
    });
    {
        let db = redb::Database::open(dir.path().join("state.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        set_format(&txn, 3);
        txn.commit().unwrap();
        assert_eq!(stored_lower_levels(&db.begin_read().unwrap()), 2 * 70);
    }
    {
        let mut node = Node::open(dir.path());
        let view = node.view();
        let report = view.verify_store().unwrap();
        assert!(report.is_ok(), "{report:?}");
        assert_eq!(report.entries, 2 * 77);
        for ((tenant, suite), root) in tenants.iter().zip(&roots) {
            let tree = view.tree(tenant).unwrap();
            assert_eq!(tree.root().unwrap(), *root);
            let leaves: Vec<HashValue> = (0..77).map(|i| tree.leaf_hash(i).unwrap()).collect();
            let memory = MemoryTree::from_leaf_hashes(*suite, &leaves).unwrap();
            for (index, size) in [(0, 77), (40, 77), (76, 77), (5, 45), (70, 71)] {
                assert_eq!(
                    tree.inclusion_proof(index, size).unwrap(),
                    memory.inclusion_proof(index, size).unwrap()
                );
            }
            assert_eq!(
                tree.consistency_proof(45, 77).unwrap(),
                memory.consistency_proof(45, 77).unwrap()
            );
        }
        // The frontier was rebuilt from leaf hashes: the next append extends the same tree.
        let appended = node
            .append(vec![request("ten_a", REGISTRAR, "r-after", b"after")])
            .await;
        assert_eq!(appended[0].as_ref().unwrap().index, 77);
        assert!(view.verify_store().unwrap().is_ok());
    }
    let db = redb::Database::open(dir.path().join("state.redb")).unwrap();
    let txn = db.begin_read().unwrap();
    assert_eq!(stored_format(&txn), [6]);
    assert_eq!(stored_lower_levels(&txn), 0);
}

/// Index generations of `generation_entries` entries: small enough that a few dozen appends
/// seal several, mid-batch.
fn small_generations(generation_entries: u64) -> StoreOptions {
    StoreOptions {
        index_generation_entries: generation_entries,
        ..StoreOptions::default()
    }
}

/// Names of the state's tables whose names start with `prefix`.
fn tables_named(dir: &Path, prefix: &str) -> Vec<String> {
    use redb::{ReadableDatabase, TableHandle};
    let db = redb::Database::open(dir.join("state.redb")).unwrap();
    let txn = db.begin_read().unwrap();
    txn.list_tables()
        .unwrap()
        .map(|t| t.name().to_string())
        .filter(|name| name.starts_with(prefix))
        .collect()
}

/// Retries every `r<i>` for i in `ids` (same content as [`fill`] appended) and a new id; each
/// retry must come back as the original entry, found in whichever generation holds it.
async fn assert_retries_are_duplicates(node: &mut Node, tenant: &str, ids: std::ops::Range<u64>) {
    let tree = node.view().tree(tenant).unwrap();
    let size = tree.size();
    let retries = ids
        .clone()
        .map(|i| {
            request(
                tenant,
                REGISTRAR,
                &format!("r{i}"),
                format!("{tenant}/{i}").as_bytes(),
            )
        })
        .collect();
    let results = node.append(retries).await;
    for (i, result) in ids.clone().zip(results) {
        let appended = result.unwrap();
        assert!(appended.duplicate, "r{i} was appended again");
        assert_eq!(
            Some(appended.index),
            tree.index_of_request(REGISTRAR, &format!("r{i}")).unwrap()
        );
        let leaf = HashValue::new(tree.info().suite, appended.leaf_hash);
        assert_eq!(tree.index_of_leaf(&leaf).unwrap(), Some(appended.index));
    }
    assert_eq!(node.view().tree(tenant).unwrap().size(), size);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_indexes_span_generations_and_every_retry_is_still_recognised() {
    let tenants = [("ten_a", Suite::Intl), ("ten_b", Suite::Gm)];
    let dir = tempfile::tempdir().unwrap();
    let options = small_generations(5);
    let mut node = Node::open_with(dir.path(), &options);
    // 2 × 23 entries in batches of two: generations of 5 fill up mid-batch.
    fill(&mut node, &tenants, 23).await;
    for (tenant, _) in tenants {
        assert_retries_are_duplicates(&mut node, tenant, 0..23).await;
    }
    // The same id for other content is refused, whichever generation holds the original.
    let conflict = node
        .append(vec![request("ten_a", REGISTRAR, "r0", b"other")])
        .await
        .remove(0);
    assert!(matches!(
        conflict,
        Err(Refusal::RequestIdConflict { index: 0, .. })
    ));
    assert!(node.view().verify_store().unwrap().is_ok());
    let before = observe(&node.view());
    drop(node);
    // 46 entries in generations of 5: 0..=8 sealed, 9 active.
    assert_eq!(tables_named(dir.path(), "leaves").len(), 10);

    // After a restart the sealed generations' filters come from disk.
    let mut node = Node::open_with(dir.path(), &options);
    assert_eq!(observe(&node.view()), before);
    for (tenant, _) in tenants {
        assert_retries_are_duplicates(&mut node, tenant, 0..23).await;
    }
    // New ids are appended, and sealing goes on.
    let fresh = node
        .append(vec![
            request("ten_a", REGISTRAR, "new-1", b"new-1"),
            request("ten_a", REGISTRAR, "new-2", b"new-2"),
        ])
        .await;
    assert_eq!(
        fresh
            .iter()
            .map(|r| r.as_ref().unwrap().index)
            .collect::<Vec<_>>(),
        vec![23, 24]
    );
    assert!(node.view().verify_store().unwrap().is_ok());

    // A store whose node now uses another generation size reads the old generations.
    drop(node);
    let mut node = Node::open(dir.path());
    for (tenant, _) in tenants {
        assert_retries_are_duplicates(&mut node, tenant, 0..23).await;
    }

    // A snapshot rebuilds the indexes in generations on the receiving node.
    let other = tempfile::tempdir().unwrap();
    let mut receiver = Node::open_with(other.path(), &small_generations(3));
    transfer(&mut node, &mut receiver).await.unwrap();
    receiver.next = node.next;
    assert!(receiver.view().verify_store().unwrap().is_ok());
    for (tenant, _) in tenants {
        assert_retries_are_duplicates(&mut receiver, tenant, 0..23).await;
    }
    drop(receiver);
    assert!(tables_named(other.path(), "leaves").len() > 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_or_damaged_request_filter_is_rebuilt_and_misses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_generations(4);
    {
        let mut node = Node::open_with(dir.path(), &options);
        fill(&mut node, &[("ten_a", Suite::Intl)], 17).await;
    }
    {
        use redb::{ReadableTable, ReadableTableMetadata};
        let db = redb::Database::open(dir.path().join("state.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(REQUEST_FILTERS).unwrap();
            assert_eq!(table.len().unwrap(), 4, "generations 0..=3 are sealed");
            // Generation 1's filter claims no keys; generation 2's is not a filter at all.
            let empty = {
                let stored = table.get(1).unwrap().unwrap();
                let mut bytes = stored.value().to_vec();
                bytes[8..].fill(0);
                bytes
            };
            table.insert(1, empty.as_slice()).unwrap();
            table.insert(2, b"garbage".as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    // Trusting either filter would append those generations' retries a second time.
    let mut node = Node::open_with(dir.path(), &options);
    assert_retries_are_duplicates(&mut node, "ten_a", 0..17).await;
    assert!(node.view().verify_store().unwrap().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_format_4_state_becomes_the_first_index_generation() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut node = Node::open(dir.path());
        fill(&mut node, &[("ten_a", Suite::Intl)], 12).await;
    }
    // Format 4 had one table per index and no filters.
    {
        let db = redb::Database::open(dir.path().join("state.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        set_format(&txn, 4);
        assert!(txn.delete_table(REQUEST_FILTERS).unwrap());
        txn.commit().unwrap();
    }
    let mut node = Node::open_with(dir.path(), &small_generations(5));
    // The 12-entry generation 0 is over the size: sealed by the first append.
    let appended = node
        .append(vec![
            request("ten_a", REGISTRAR, "after-1", b"after-1"),
            request("ten_a", REGISTRAR, "after-2", b"after-2"),
        ])
        .await;
    assert_eq!(appended[1].as_ref().unwrap().index, 13);
    assert_retries_are_duplicates(&mut node, "ten_a", 0..12).await;
    assert!(node.view().verify_store().unwrap().is_ok());
    drop(node);
    assert_eq!(
        tables_named(dir.path(), "leaves"),
        vec!["leaves".to_string(), "leaves_1".to_string()]
    );
    let db = redb::Database::open(dir.path().join("state.redb")).unwrap();
    let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
    assert_eq!(stored_format(&txn), [6]);
}

// ---------------------------------------------------------------------------------------------
// a single-node Raft on the real storage

struct NoNetwork;

fn unreachable<E: std::error::Error>() -> RPCError<u64, BasicNode, E> {
    RPCError::Unreachable(Unreachable::new(&std::io::Error::other("single node")))
}

impl RaftNetworkFactory<TypeConfig> for NoNetwork {
    type Network = NoNetwork;

    async fn new_client(&mut self, _target: u64, _node: &BasicNode) -> Self::Network {
        NoNetwork
    }
}

impl RaftNetwork<TypeConfig> for NoNetwork {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        Err(unreachable())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        Err(unreachable())
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        Err(unreachable())
    }
}

fn raft_config() -> Arc<openraft::Config> {
    Arc::new(
        openraft::Config {
            heartbeat_interval: 100,
            election_timeout_min: 300,
            election_timeout_max: 600,
            max_in_snapshot_log_to_keep: 0,
            ..Default::default()
        }
        .validate()
        .unwrap(),
    )
}

async fn start(dir: &Path) -> (Raft<TypeConfig>, LedgerView, storage::LogReader) {
    // After a shutdown, openraft's tasks may still be releasing the stores for a moment.
    let mut tries = 0;
    let (log, sm) = loop {
        match storage::open(dir) {
            Ok(stores) => break stores,
            Err(e) if tries < 50 => {
                tries += 1;
                eprintln!("reopen: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("reopen: {e}"),
        }
    };
    let view = sm.view();
    let reader = log.reader();
    let raft = Raft::new(1, raft_config(), NoNetwork, log, sm)
        .await
        .unwrap();
    (raft, view, reader)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_raft_appends_snapshots_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let (raft, view, reader) = start(dir.path()).await;
    raft.initialize(BTreeMap::from([(1u64, BasicNode::new("127.0.0.1:0"))]))
        .await
        .unwrap();
    raft.wait(Some(Duration::from_secs(5)))
        .state(ServerState::Leader, "leader")
        .await
        .unwrap();
    raft.client_write(register("ten_a", Suite::Intl))
        .await
        .unwrap();

    const N: u64 = 400;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..N {
        let raft = raft.clone();
        tasks.spawn(async move {
            raft.client_write(batch(vec![request(
                "ten_a",
                REGISTRAR,
                &format!("r{i}"),
                &i.to_be_bytes(),
            )]))
            .await
            .unwrap()
            .data
        });
    }
    let mut indexes = Vec::new();
    while let Some(r) = tasks.join_next().await {
        match r.unwrap() {
            LedgerResponse::Appended(mut v) => indexes.push(v.remove(0).unwrap().index),
            other => panic!("{other:?}"),
        }
    }
    indexes.sort_unstable();
    assert_eq!(indexes, (0..N).collect::<Vec<_>>());

    // openraft 0.9 hands the log one entry per client write; they share an fsync when they
    // arrive faster than the disk syncs (see `appends_queued_together_share_one_fsync`).
    let stats = reader.stats();
    eprintln!("log writer: {stats:?}");
    assert!(stats.entries > N);

    // Snapshot and purge the log.
    raft.trigger().snapshot().await.unwrap();
    let last = raft.metrics().borrow().last_log_index.unwrap();
    raft.wait(Some(Duration::from_secs(5)))
        .snapshot(LogId::new(CommittedLeaderId::new(1, 1), last), "snapshot")
        .await
        .ok();
    let before = observe(&view);
    raft.shutdown().await.unwrap();
    drop(raft);
    drop(reader);
    drop(view);

    // Restart from disk: same state, and appends continue (duplicates still recognised).
    let (raft, view, _reader) = start(dir.path()).await;
    raft.wait(Some(Duration::from_secs(5)))
        .state(ServerState::Leader, "leader again")
        .await
        .unwrap();
    assert_eq!(observe(&view), before);
    let r = raft
        .client_write(batch(vec![
            request("ten_a", REGISTRAR, "r7", &7u64.to_be_bytes()),
            request("ten_a", REGISTRAR, "fresh", b"fresh"),
        ]))
        .await
        .unwrap()
        .data;
    match r {
        LedgerResponse::Appended(v) => {
            let v: Vec<Appended> = v.into_iter().map(Result::unwrap).collect();
            assert!(v[0].duplicate);
            assert_eq!((v[1].index, v[1].duplicate), (N, false));
        }
        other => panic!("{other:?}"),
    }
    assert!(view.verify_store().unwrap().is_ok());
    raft.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// three nodes in one process: a node that was down catches up by snapshot

/// Calls the target node's `Raft` directly; nodes not (yet) registered are unreachable.
#[derive(Clone, Default)]
struct Router {
    nodes: Arc<std::sync::Mutex<BTreeMap<u64, Raft<TypeConfig>>>>,
}

struct Conn {
    router: Router,
    target: u64,
}

impl Router {
    fn get(&self, id: u64) -> Option<Raft<TypeConfig>> {
        self.nodes.lock().unwrap().get(&id).cloned()
    }
}

impl RaftNetworkFactory<TypeConfig> for Router {
    type Network = Conn;

    async fn new_client(&mut self, target: u64, _node: &BasicNode) -> Self::Network {
        Conn {
            router: self.clone(),
            target,
        }
    }
}

impl RaftNetwork<TypeConfig> for Conn {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let raft = self.router.get(self.target).ok_or_else(unreachable)?;
        raft.append_entries(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        let raft = self.router.get(self.target).ok_or_else(unreachable)?;
        raft.install_snapshot(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let raft = self.router.get(self.target).ok_or_else(unreachable)?;
        raft.vote(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

async fn start_member(router: &Router, id: u64, dir: &Path) -> (Raft<TypeConfig>, LedgerView) {
    let (log, sm) = storage::open(dir).unwrap();
    let view = sm.view();
    let config = openraft::Config {
        heartbeat_interval: 100,
        election_timeout_min: 300,
        election_timeout_max: 600,
        max_in_snapshot_log_to_keep: 0,
        // Small chunks: the snapshot file is streamed in many pieces.
        snapshot_max_chunk_size: 4096,
        ..Default::default()
    };
    let raft = Raft::new(
        id,
        Arc::new(config.validate().unwrap()),
        router.clone(),
        log,
        sm,
    )
    .await
    .unwrap();
    router.nodes.lock().unwrap().insert(id, raft.clone());
    (raft, view)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_was_down_catches_up_by_snapshot() {
    let dirs: Vec<TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let router = Router::default();
    let (raft1, view1) = start_member(&router, 1, dirs[0].path()).await;
    let (raft2, _view2) = start_member(&router, 2, dirs[1].path()).await;
    let members: BTreeMap<u64, BasicNode> = (1..=3)
        .map(|id| (id, BasicNode::new(format!("node-{id}"))))
        .collect();
    raft1.initialize(members).await.unwrap();
    let m = raft1
        .wait(Some(Duration::from_secs(10)))
        .metrics(|m| m.current_leader.is_some(), "a leader")
        .await
        .unwrap();
    let leader = router.get(m.current_leader.unwrap()).unwrap();

    leader
        .client_write(register("ten_a", Suite::Gm))
        .await
        .unwrap();
    for i in 0..60u64 {
        let reqs = (0..5)
            .map(|j| {
                request(
                    "ten_a",
                    REGISTRAR,
                    &format!("r{i}-{j}"),
                    &(i * 5 + j).to_be_bytes(),
                )
            })
            .collect();
        leader.client_write(batch(reqs)).await.unwrap();
    }
    // Both live nodes snapshot and purge their logs: node 3 can only be fed a snapshot.
    for raft in [&raft1, &raft2] {
        raft.trigger().snapshot().await.unwrap();
        raft.wait(Some(Duration::from_secs(10)))
            .metrics(
                |m| m.purged.is_some() && m.snapshot.is_some(),
                "snapshot and purge",
            )
            .await
            .unwrap();
    }
    // A few more entries after the snapshot.
    leader
        .client_write(batch(vec![request("ten_a", REGISTRAR, "late", b"late")]))
        .await
        .unwrap();

    let (raft3, view3) = start_member(&router, 3, dirs[2].path()).await;
    let last = leader.metrics().borrow().last_log_index;
    let m3 = raft3
        .wait(Some(Duration::from_secs(20)))
        .applied_index_at_least(last, "node 3 caught up")
        .await
        .unwrap();
    assert!(m3.snapshot.is_some(), "node 3 was not sent a snapshot");
    raft1
        .wait(Some(Duration::from_secs(10)))
        .applied_index_at_least(last, "node 1 applied everything")
        .await
        .unwrap();
    assert_eq!(view3.tenant("ten_a").unwrap().unwrap().size, 301);
    assert_eq!(observe(&view3), observe(&view1));
    assert!(view3.verify_store().unwrap().is_ok());

    for raft in [raft1, raft2, raft3] {
        raft.shutdown().await.unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// institution keys

#[tokio::test]
async fn key_entries_decide_who_may_append() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::open(dir.path());
    node.register("ten_a", Suite::Gm).await;

    // Nobody but the registrar before a key is registered.
    let r = node
        .append(vec![request("ten_a", "ins_a", "r1", b"x")])
        .await;
    assert!(
        matches!(r[0], Err(Refusal::UnknownInstitution { .. })),
        "{r:?}"
    );

    // Only the registrar may register keys, and only with its own key id.
    let mut forged = key_registration("ten_a", "ins_a");
    forged.submitter = "ins_b".into();
    let mut wrong_key = key_registration("ten_a", "ins_a");
    wrong_key.key_id = INSTITUTION_KEY.key_id().to_hex();
    let r = node.append(vec![forged, wrong_key]).await;
    assert!(matches!(r[0], Err(Refusal::InvalidEntry { .. })), "{r:?}");
    assert!(matches!(r[1], Err(Refusal::UnknownKey { .. })), "{r:?}");
    assert_eq!(node.view().tenant("ten_a").unwrap().unwrap().size, 0);

    // Registered: the institution may append with that key, not with another.
    let reg = node.append(vec![key_registration("ten_a", "ins_a")]).await;
    let reg_index = reg[0].as_ref().unwrap().index;
    let mut other_key = request("ten_a", "ins_a", "r2", b"y");
    other_key.key_id = REGISTRAR_KEY.key_id().to_hex();
    let r = node
        .append(vec![request("ten_a", "ins_a", "r1", b"x"), other_key])
        .await;
    assert!(r[0].is_ok(), "{r:?}");
    assert!(matches!(r[1], Err(Refusal::UnknownKey { .. })), "{r:?}");
    let tree = node.view().tree("ten_a").unwrap();
    let key = tree
        .key("ins_a", &INSTITUTION_KEY.key_id().to_hex())
        .unwrap()
        .unwrap();
    assert_eq!(key.registered_index, reg_index);
    assert_eq!(key.revoked_index, None);
    assert_eq!(key.public_key, INSTITUTION_KEY.public_key().to_spki_der());
    drop(tree);

    // Revoked in the same batch as a later append: the append after it is refused on every
    // replica, because the state machine applies the log in order.
    let revocation = AppendRequest {
        kind: keys::KIND_KEY_REVOKED.into(),
        payload: serde_json::to_vec(&keys::KeyRevocation {
            institution: "ins_a".into(),
            key_id: INSTITUTION_KEY.key_id().to_hex(),
            reason: "compromised".into(),
        })
        .unwrap(),
        ..request("ten_a", REGISTRAR, "revoke-ins_a", b"")
    };
    let r = node
        .append(vec![
            request("ten_a", "ins_a", "r3", b"before"),
            revocation.clone(),
            request("ten_a", "ins_a", "r4", b"after"),
        ])
        .await;
    assert!(r[0].is_ok() && r[1].is_ok(), "{r:?}");
    let revoked_at = r[1].as_ref().unwrap().index;
    assert!(
        matches!(&r[2], Err(Refusal::KeyRevoked { revoked_at: at, .. }) if *at == revoked_at),
        "{r:?}"
    );
    // Revoking twice is refused.
    let mut again = revocation;
    again.request_id = "revoke-again".into();
    let r = node.append(vec![again]).await;
    assert!(matches!(r[0], Err(Refusal::InvalidEntry { .. })), "{r:?}");

    // The key table is derived from the log: a snapshot installed elsewhere rebuilds it.
    let other_dir = tempfile::tempdir().unwrap();
    let mut other = Node::open(other_dir.path());
    transfer(&mut node, &mut other).await.unwrap();
    let tree = other.view().tree("ten_a").unwrap();
    let key = tree
        .key("ins_a", &INSTITUTION_KEY.key_id().to_hex())
        .unwrap()
        .unwrap();
    assert_eq!(
        (key.registered_index, key.revoked_index),
        (reg_index, Some(revoked_at))
    );
}
