//! When a node takes a snapshot (after which openraft purges the Raft log before it).
//!
//! A snapshot is a small manifest ([`crate::storage::snapshot`]), so taking one costs about the
//! same at any ledger size, and what bounds the disk a node uses besides its state is the Raft
//! log since the last snapshot. openraft's `LogsSinceLast(n)` counts Raft entries, but one
//! Raft entry carries a whole batch of appends (up to `ledger_max_batch`), so under load the
//! log would hold up to n × batch ledger entries. Here a snapshot is due once the log since
//! the last one holds `ledger_snapshot_every` Raft entries **or** adds that many ledger
//! entries, whichever comes first.
//!
//! After a snapshot openraft keeps `ledger_snapshot_keep_logs` Raft entries of log before it
//! (so a briefly lagging follower catches up from the log), which with large batches could be
//! millions of ledger entries. The same task therefore purges further, keeping about that many
//! *ledger* entries: it samples (Raft index, ledger entries) on every check and purges up to
//! the latest sample that lies at least `keep` ledger entries before the snapshot. On the
//! leader it keeps what a follower has not replicated yet (a restarted follower then catches
//! up from the log, not from a snapshot of the whole ledger), but never more than
//! `ledger_snapshot_every` ledger entries before the snapshot: a follower further behind gets
//! a snapshot anyway.

use std::collections::VecDeque;
use std::time::Duration;

use openraft::Raft;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::storage::{LedgerView, TypeConfig};

const CHECK_EVERY: Duration = Duration::from_millis(500);
/// A requested snapshot that has not shown up by then (openraft ignores a request while a
/// build runs; a failed build stops the Raft core) is requested again.
const RETRY_AFTER: Duration = Duration::from_secs(60);

/// Whether a snapshot is due, given the Raft entries applied since the last snapshot, the
/// configured interval and the ledger entries now and in the last snapshot.
pub fn due(
    raft_entries_since: u64,
    every: u64,
    entries_now: u64,
    entries_at_snapshot: u64,
) -> bool {
    raft_entries_since >= every || entries_now.saturating_sub(entries_at_snapshot) >= every
}

/// Samples kept for choosing how far to purge (one per check: at most ~1.4 h of them).
const MAX_SAMPLES: usize = 10_000;

/// The Raft index up to which the log may be purged so that at least `keep` ledger entries of
/// log remain before the snapshot at `snapshot_index` (holding `at_snapshot` ledger entries),
/// from samples of (Raft index, ledger entries applied up to it).
pub fn purge_upto(
    samples: impl IntoIterator<Item = (u64, u64)>,
    snapshot_index: u64,
    at_snapshot: u64,
    keep: u64,
) -> Option<u64> {
    samples
        .into_iter()
        .filter(|&(index, entries)| {
            index <= snapshot_index && entries.saturating_add(keep) <= at_snapshot
        })
        .map(|(index, _)| index)
        .max()
}

/// How far to purge: [`purge_upto`] with `keep`, but not past the lowest index a follower has
/// replicated (`followers_matched`, leader only) unless that lies more than `keep_at_most`
/// ledger entries before the snapshot.
pub fn purge_target(
    samples: &[(u64, u64)],
    snapshot_index: u64,
    at_snapshot: u64,
    keep: u64,
    keep_at_most: u64,
    followers_matched: Option<u64>,
) -> Option<u64> {
    let wanted = purge_upto(samples.iter().copied(), snapshot_index, at_snapshot, keep)?;
    let Some(matched) = followers_matched else {
        return Some(wanted);
    };
    let floor = purge_upto(
        samples.iter().copied(),
        snapshot_index,
        at_snapshot,
        keep_at_most,
    );
    let upto = wanted.min(floor.map_or(matched, |f| matched.max(f)));
    (upto > 0).then_some(upto)
}

/// Checks twice a second whether a snapshot is due and asks openraft for one, and purges the
/// log before the last snapshot down to about `keep` ledger entries ([`purge_target`]).
pub(crate) fn spawn(
    raft: Raft<TypeConfig>,
    view: LedgerView,
    every: u64,
    keep: u64,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // The snapshot index at the time of our last request, and when it was made.
        let mut requested: Option<(u64, Instant)> = None;
        let mut samples: VecDeque<(u64, u64)> = VecDeque::new();
        let mut purge_requested = 0u64;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let (applied, snapshot, purged, followers_matched) = {
                let metrics = raft.metrics();
                let m = metrics.borrow();
                let followers_matched = m.replication.as_ref().and_then(|r| {
                    r.iter()
                        .filter(|(id, _)| **id != m.id)
                        .map(|(_, matched)| matched.map_or(0, |l| l.index))
                        .min()
                });
                (
                    m.last_applied.map_or(0, |l| l.index),
                    m.snapshot.map_or(0, |l| l.index),
                    m.purged.map(|l| l.index),
                    followers_matched,
                )
            };
            let (now, at_snapshot) = view.entry_counts();
            if samples.back().is_none_or(|&(index, _)| index < applied) {
                samples.push_back((applied, now));
                if samples.len() > MAX_SAMPLES {
                    samples.pop_front();
                }
            }
            samples.retain(|&(index, _)| purged.is_none_or(|p| index > p));
            let sampled = samples.make_contiguous();
            if let Some(upto) = purge_target(
                sampled,
                snapshot,
                at_snapshot,
                keep,
                every,
                followers_matched,
            ) && purged.is_none_or(|p| upto > p)
                && upto != purge_requested
            {
                tracing::debug!(upto, snapshot, "purging the log");
                if let Err(error) = raft.trigger().purge_log(upto).await {
                    tracing::warn!(%error, "requesting a log purge failed");
                }
                purge_requested = upto;
            }
            if let Some((at, when)) = requested
                && at == snapshot
                && when.elapsed() < RETRY_AFTER
            {
                continue;
            }
            if !due(applied.saturating_sub(snapshot), every, now, at_snapshot) {
                continue;
            }
            tracing::info!(
                raft_index = applied,
                ledger_entries = now,
                entries_in_last_snapshot = at_snapshot,
                "taking a snapshot"
            );
            if let Err(error) = raft.trigger().snapshot().await {
                tracing::warn!(%error, "requesting a snapshot failed");
            }
            requested = Some((snapshot, Instant::now()));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leader_keeps_what_a_follower_still_needs_within_a_bound() {
        let samples: Vec<(u64, u64)> = (1..=50).map(|i| (i, i * 2_000)).collect();
        // No follower information (a follower node, or one node): keep 1,000 entries.
        assert_eq!(
            purge_target(&samples, 40, 80_000, 1_000, 20_000, None),
            Some(39)
        );
        // Every follower is up to date: the same.
        assert_eq!(
            purge_target(&samples, 40, 80_000, 1_000, 20_000, Some(45)),
            Some(39)
        );
        // A follower has replicated up to 33 only: keep the log it needs.
        assert_eq!(
            purge_target(&samples, 40, 80_000, 1_000, 20_000, Some(33)),
            Some(33)
        );
        // A follower far behind (index 3): keep at most 20,000 entries (to index 30) for it.
        assert_eq!(
            purge_target(&samples, 40, 80_000, 1_000, 20_000, Some(3)),
            Some(30)
        );
        // A follower that has nothing and a small ledger: purge nothing.
        assert_eq!(
            purge_target(&samples, 5, 10_000, 1_000, 20_000, Some(0)),
            None
        );
    }

    #[test]
    fn purging_keeps_about_keep_ledger_entries_before_the_snapshot() {
        // Raft entries of 2,000 appends (a bulk load): index 10 holds 20k entries, and so on.
        let samples: Vec<(u64, u64)> = (1..=50).map(|i| (i, i * 2_000)).collect();
        // Snapshot at index 40 (80k entries), keep 1,000: purge up to 39 (78k entries).
        assert_eq!(purge_upto(samples.clone(), 40, 80_000, 1_000), Some(39));
        // Keep 10,000: purge up to 35 (70k), so 10k entries remain.
        assert_eq!(purge_upto(samples.clone(), 40, 80_000, 10_000), Some(35));
        // Never past the snapshot, whatever the samples after it say.
        assert_eq!(purge_upto(samples.clone(), 5, 10_000, 0), Some(5));
        // Nothing old enough yet.
        assert_eq!(purge_upto(samples, 1, 2_000, 1_000), None);
    }

    #[test]
    fn single_appends_snapshot_every_interval() {
        assert!(!due(19_999, 20_000, 19_999, 0));
        assert!(due(20_000, 20_000, 20_000, 0));
        // Raft entries that add no ledger entries (cosignatures) count too.
        assert!(due(20_000, 20_000, 1_000_000, 1_000_000));
    }

    #[test]
    fn batched_appends_snapshot_by_ledger_entries() {
        // 100 Raft entries of 200 appends each: the log holds 20k ledger entries.
        assert!(due(100, 20_000, 1_020_000, 1_000_000));
        assert!(!due(99, 20_000, 1_019_999, 1_000_000));
        // The same at any ledger size: a snapshot no longer copies the ledger.
        assert!(due(100, 20_000, 10_020_000, 10_000_000));
    }
}
