//! Entries sealed at rest (state format 6): a store written by format 5 is sealed when a node
//! opens it with its key; reads, proofs, verification, snapshots and appends carry on; the
//! state file holds no entry in clear; without the key, or with another cluster's, nothing is
//! served and verification says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use caretrail_crypto::Suite;
use caretrail_ledger::storage::at_rest::AtRestKey;
use caretrail_ledger::storage::keys::REGISTRAR;
use caretrail_ledger::storage::{StoreError, StoreOptions};
use openraft::storage::RaftStateMachine;

use crate::storage::{
    Node, install_bytes, request, set_format, stored_format, stream_of, take_snapshot,
};

fn keyed(secret: &[u8]) -> StoreOptions {
    StoreOptions {
        at_rest_key: Some(Arc::new(AtRestKey::derive(secret).unwrap())),
        ..StoreOptions::default()
    }
}

fn file_holds(dir: &Path, marker: &[u8]) -> bool {
    let bytes = std::fs::read(dir.join("state.redb")).unwrap();
    bytes.windows(marker.len()).any(|w| w == marker)
}

const MARKER: &[u8] = b"category=mental_health;marker=5c1d9e";

/// `n` submissions to `ten_a` whose payloads hold [`MARKER`].
fn marked(n: u64) -> Vec<caretrail_ledger::storage::AppendRequest> {
    (0..n)
        .map(|i| {
            request(
                "ten_a",
                REGISTRAR,
                &format!("r{i}"),
                &[MARKER, &i.to_be_bytes()].concat(),
            )
        })
        .collect()
}
const LATER: &[u8] = b"category=genetic;marker=77a0f2";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_format_5_store_is_sealed_when_opened_with_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let (entries, root) = {
        let mut node = Node::open(dir.path());
        node.register("ten_a", Suite::Intl).await;
        node.append(marked(40)).await;
        let tree = node.view().tree("ten_a").unwrap();
        let entries: Vec<_> = (0..40).map(|i| tree.entry(i).unwrap()).collect();
        (entries, tree.root_at(40).unwrap())
    };
    // What format 5 wrote: every entry in clear.
    {
        let db = redb::Database::open(dir.path().join("state.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        set_format(&txn, 5);
        txn.commit().unwrap();
    }
    assert!(file_holds(dir.path(), MARKER));

    let options = keyed(b"cluster checkpoint key");
    {
        let mut node = Node::open_with(dir.path(), &options);
        let tree = node.view().tree("ten_a").unwrap();
        for (i, want) in entries.iter().enumerate() {
            assert_eq!(&tree.entry(i as u64).unwrap(), want, "entry {i}");
        }
        assert_eq!(tree.root_at(40).unwrap(), root);
        tree.inclusion_proof(7, 40).unwrap();
        let report = node.view().verify_store().unwrap();
        assert!(report.is_ok(), "{report:?}");
        assert_eq!(report.entries, 40);
        // New entries are sealed as they are applied; a retry is still recognised.
        let appended = node
            .append(vec![
                request("ten_a", REGISTRAR, "later", LATER),
                request(
                    "ten_a",
                    REGISTRAR,
                    "r3",
                    &[MARKER, &3u64.to_be_bytes()].concat(),
                ),
            ])
            .await;
        assert_eq!(appended[0].as_ref().unwrap().index, 40);
        assert!(appended[1].as_ref().unwrap().duplicate);
        assert!(node.view().verify_store().unwrap().is_ok());
    }
    assert!(
        !file_holds(dir.path(), MARKER),
        "no entry in clear after the conversion"
    );
    assert!(!file_holds(dir.path(), LATER), "nor one appended since");
    {
        let db = redb::Database::open(dir.path().join("state.redb")).unwrap();
        let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
        assert_eq!(stored_format(&txn), [6]);
    }

    // Opened again with the key: nothing left to convert, everything served.
    {
        let node = Node::open_with(dir.path(), &options);
        assert_eq!(
            node.view()
                .tree("ten_a")
                .unwrap()
                .entry(40)
                .unwrap()
                .payload,
            LATER
        );
    }
    // Without the key, or with another cluster's, no entry is served and verification fails.
    for options in [StoreOptions::default(), keyed(b"another cluster")] {
        let node = Node::open_with(dir.path(), &options);
        let tree = node.view().tree("ten_a").unwrap();
        assert!(matches!(tree.entry(0), Err(StoreError::Corrupt(_))));
        let report = node.view().verify_store().unwrap();
        let mismatch = report.first_mismatch.expect("sealed entries do not open");
        assert!(mismatch.problem.contains("does not open"), "{mismatch}");
    }
}

/// A snapshot of a sealed store, sent to a node opening an empty store with the same key:
/// the stream (a file on the sender's volume while it is sent) holds no entry in clear, and
/// the receiver's state is the sender's, sealed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_carry_sealed_entries_between_nodes_of_one_cluster() {
    let options = keyed(b"cluster checkpoint key");
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = Node::open_with(dir_a.path(), &options);
    a.register("ten_a", Suite::Gm).await;
    a.append(marked(25)).await;
    assert!(!file_holds(dir_a.path(), MARKER));
    let mut snap = take_snapshot(&mut a).await;
    let meta = snap.meta.clone();
    let bytes = stream_of(&mut snap).await.unwrap();
    assert!(!bytes.windows(MARKER.len()).any(|w| w == MARKER));

    let mut b = Node::open_with(dir_b.path(), &options);
    install_bytes(&mut b, &meta, &bytes).await.unwrap();
    let (ta, tb) = (
        a.view().tree("ten_a").unwrap(),
        b.view().tree("ten_a").unwrap(),
    );
    assert_eq!(ta.root_at(25).unwrap(), tb.root_at(25).unwrap());
    assert_eq!(ta.entry(24).unwrap(), tb.entry(24).unwrap());
    assert!(b.view().verify_store().unwrap().is_ok());
    drop(b);
    assert!(!file_holds(dir_b.path(), MARKER));

    // A node of another cluster cannot install it.
    let dir_c = tempfile::tempdir().unwrap();
    let mut c = Node::open_with(dir_c.path(), &keyed(b"another cluster"));
    assert!(install_bytes(&mut c, &meta, &bytes).await.is_err());
    let _ = c.sm.get_current_snapshot().await;
}
