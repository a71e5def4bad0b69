//! The durable Raft log ([`RaftLogStorage`]) with group commit.
//!
//! # Write path
//!
//! Every write (append, truncate, purge, vote, committed) is queued, in call order, to one
//! writer thread. The thread takes everything queued at that moment (up to
//! [`MAX_OPS_PER_COMMIT`] operations), applies it in order in **one** redb write transaction
//! and commits it with [`Durability::Immediate`]: one fsync for all of them, however many
//! `append` calls and entries they hold. Only then are the `append` callbacks called and the
//! `save_vote` calls answered. While an fsync is under way the next calls queue up, so under
//! load a commit carries many calls (group commit), and at most one fsync is spent per call.
//!
//! # Read path
//!
//! openraft requires appended entries to be readable as soon as `append` returns, before they
//! are durable. The store keeps a view in memory — last purged and last log id, and the entries
//! queued but not yet committed (`pending`) — updated synchronously by each call. A read clamps
//! its range to the view, takes the pending entries in it, and reads the rest from a redb read
//! transaction begun *after* that (the writer drops pending entries only after their commit, so
//! every entry is in one place or the other).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::error::{Result, StoreError};
use super::schema::{decode, encode};
use super::types::{LogId, RaftEntry, RaftStorageError, TypeConfig, Vote};

/// Raft log entries by index (postcard-encoded `openraft::Entry`).
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
/// Vote, committed and last purged log id (postcard).
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");

const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_PURGED: &str = "last_purged";

/// Upper bound of queued operations folded into one commit.
pub const MAX_OPS_PER_COMMIT: usize = 4096;

/// redb page cache of the log database.
const LOG_CACHE_BYTES: usize = 64 * 1024 * 1024;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Entries appended but not yet durable, with the sequence number of their append (a
/// truncate-and-reappend replaces an index with a newer sequence number).
type Pending = BTreeMap<u64, (u64, RaftEntry)>;

#[derive(Default)]
struct LogView {
    last_purged: Option<LogId>,
    last: Option<LogId>,
    pending: Pending,
    next_seq: u64,
    vote: Option<Vote>,
    committed: Option<LogId>,
    /// Set when a commit failed: every later write fails too.
    failed: Option<String>,
}

struct LogShared {
    db: Database,
    view: Mutex<LogView>,
    stats: Mutex<LogStats>,
}

/// Counters of the writer, for tests, metrics and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Write transactions committed.
    pub commits: u64,
    /// Of which durable (fsync).
    pub durable_commits: u64,
    /// `append` calls written.
    pub append_calls: u64,
    /// Entries written.
    pub entries: u64,
}

type Ack = tokio::sync::oneshot::Sender<std::result::Result<(), String>>;

/// Who is told when an append is durable.
enum Completion {
    Raft(LogFlushed<TypeConfig>),
    Ack(Ack),
}

enum Op {
    Append {
        /// (sequence number, index, encoded entry)
        entries: Vec<(u64, u64, Vec<u8>)>,
        done: Completion,
    },
    Truncate(u64),
    Purge(LogId, Vec<u8>),
    Vote(Vec<u8>, Ack),
    Committed(Vec<u8>),
    Sync(Ack),
}

/// Owns the writer thread: dropping the last handle closes the queue and waits for the thread
/// to finish what was queued.
struct Writer {
    tx: Option<mpsc::Sender<Op>>,
    handle: Option<JoinHandle<()>>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// The durable Raft log (see the module docs).
pub struct LogStore {
    shared: Arc<LogShared>,
    writer: Arc<Writer>,
}

/// A read handle on the log for openraft's replication tasks.
#[derive(Clone)]
pub struct LogReader {
    shared: Arc<LogShared>,
}

impl LogStore {
    /// Opens (or creates) the log database at `path`. Fails if another handle has it open.
    pub fn open(path: &Path) -> Result<Self> {
        let db = Database::builder()
            .set_cache_size(LOG_CACHE_BYTES)
            .create(path)?;
        let txn = db.begin_write()?;
        {
            txn.open_table(LOG)?;
            txn.open_table(META)?;
        }
        txn.commit()?;

        let mut view = LogView::default();
        {
            let txn = db.begin_read()?;
            let meta = txn.open_table(META)?;
            if let Some(v) = meta.get(KEY_VOTE)? {
                view.vote = Some(decode(v.value())?);
            }
            if let Some(v) = meta.get(KEY_COMMITTED)? {
                view.committed = decode(v.value())?;
            }
            if let Some(v) = meta.get(KEY_PURGED)? {
                view.last_purged = Some(decode(v.value())?);
            }
            let log = txn.open_table(LOG)?;
            view.last = match log.last()? {
                Some((_, v)) => Some(decode::<RaftEntry>(v.value())?.log_id),
                None => view.last_purged,
            };
        }

        let shared = Arc::new(LogShared {
            db,
            view: Mutex::new(view),
            stats: Mutex::new(LogStats::default()),
        });
        let (tx, rx) = mpsc::channel();
        let thread_shared = shared.clone();
        let handle = std::thread::Builder::new()
            .name("ledger-log-writer".into())
            .spawn(move || writer_loop(&thread_shared, &rx))?;
        Ok(Self {
            shared,
            writer: Arc::new(Writer {
                tx: Some(tx),
                handle: Some(handle),
            }),
        })
    }

    fn send(&self, op: Op) -> Result<()> {
        let tx = self
            .writer
            .tx
            .as_ref()
            .ok_or_else(|| StoreError::WriterStopped("closed".into()))?;
        tx.send(op)
            .map_err(|_| StoreError::WriterStopped("the writer thread is gone".into()))
    }

    fn check_failed(&self) -> Result<()> {
        match &lock(&self.shared.view).failed {
            Some(e) => Err(StoreError::WriterStopped(e.clone())),
            None => Ok(()),
        }
    }

    /// Waits until every write queued so far is durable.
    pub async fn flush(&self) -> Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Op::Sync(tx))?;
        rx.await
            .map_err(|_| StoreError::WriterStopped("no answer".into()))?
            .map_err(StoreError::WriterStopped)
    }

    /// Writer counters since open.
    pub fn stats(&self) -> LogStats {
        *lock(&self.shared.stats)
    }

    /// A read handle sharing this store.
    pub fn reader(&self) -> LogReader {
        LogReader {
            shared: self.shared.clone(),
        }
    }

    /// Current log state (last purged and last log id), including entries not yet durable.
    pub fn log_state(&self) -> LogState<TypeConfig> {
        let view = lock(&self.shared.view);
        LogState {
            last_purged_log_id: view.last_purged,
            last_log_id: view.last,
        }
    }

    /// Queues `entries` for the next commit and returns at once (they are readable already);
    /// the returned receiver answers once they are durable. Outside openraft (tools, tests)
    /// this is `append` without a `LogFlushed` callback.
    pub fn append_queued(
        &mut self,
        entries: Vec<RaftEntry>,
    ) -> Result<tokio::sync::oneshot::Receiver<std::result::Result<(), String>>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.do_append(entries, Completion::Ack(tx))?;
        Ok(rx)
    }

    fn do_append<I>(&mut self, entries: I, done: Completion) -> Result<()>
    where
        I: IntoIterator<Item = RaftEntry>,
    {
        self.check_failed()?;
        let mut encoded = Vec::new();
        for entry in entries {
            let bytes = encode(&entry)?;
            encoded.push((entry, bytes));
        }
        let mut ops = Vec::with_capacity(encoded.len());
        {
            let mut view = lock(&self.shared.view);
            for (entry, bytes) in encoded {
                let seq = view.next_seq;
                view.next_seq += 1;
                let index = entry.log_id.index;
                view.last = Some(entry.log_id);
                view.pending.insert(index, (seq, entry));
                ops.push((seq, index, bytes));
            }
        }
        self.send(Op::Append { entries: ops, done })
    }

    fn do_truncate(&mut self, log_id: LogId) -> Result<()> {
        self.check_failed()?;
        let index = log_id.index;
        {
            let mut view = lock(&self.shared.view);
            let _removed = view.pending.split_off(&index);
            let affected = view.last.is_some_and(|l| l.index >= index);
            if affected {
                let new_last = match index.checked_sub(1) {
                    None => view.last_purged,
                    Some(prev) if view.last_purged.is_some_and(|p| p.index >= prev) => {
                        view.last_purged
                    }
                    Some(prev) => match view.pending.get(&prev) {
                        Some((_, e)) => Some(e.log_id),
                        None => read_range(&self.shared.db, prev, prev + 1)?
                            .into_iter()
                            .next()
                            .map(|(_, e)| e.log_id)
                            .or(view.last_purged),
                    },
                };
                view.last = new_last;
            }
        }
        self.send(Op::Truncate(index))
    }

    fn do_purge(&mut self, log_id: LogId) -> Result<()> {
        self.check_failed()?;
        let bytes = encode(&log_id)?;
        {
            let mut view = lock(&self.shared.view);
            if view.last_purged.is_some_and(|p| p.index >= log_id.index) {
                return Ok(());
            }
            view.last_purged = Some(log_id);
            if view.last.is_none_or(|l| l.index < log_id.index) {
                view.last = Some(log_id);
            }
            let keep = view.pending.split_off(&(log_id.index.saturating_add(1)));
            view.pending = keep;
        }
        self.send(Op::Purge(log_id, bytes))
    }

    async fn do_save_vote(&mut self, vote: &Vote) -> Result<()> {
        self.check_failed()?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Op::Vote(encode(vote)?, tx))?;
        rx.await
            .map_err(|_| StoreError::WriterStopped("no answer".into()))?
            .map_err(StoreError::WriterStopped)?;
        lock(&self.shared.view).vote = Some(*vote);
        Ok(())
    }

    fn do_save_committed(&mut self, committed: Option<LogId>) -> Result<()> {
        self.check_failed()?;
        let bytes = encode(&committed)?;
        lock(&self.shared.view).committed = committed;
        // Not waited for: openraft only needs it as a hint at startup.
        self.send(Op::Committed(bytes))
    }
}

/// Reads `[start, end)` from the database only (no pending entries).
fn read_range(db: &Database, start: u64, end: u64) -> Result<Vec<(u64, RaftEntry)>> {
    let txn = db.begin_read()?;
    let table = txn.open_table(LOG)?;
    let mut out = Vec::new();
    for item in table.range(start..end)? {
        let (k, v) = item?;
        out.push((k.value(), decode(v.value())?));
    }
    Ok(out)
}

fn range_bounds<RB: RangeBounds<u64>>(range: &RB) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.saturating_add(1),
        Bound::Excluded(&e) => e,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

impl LogShared {
    fn entries(&self, start: u64, end: u64) -> Result<Vec<RaftEntry>> {
        let (lo, hi, mut pending) = {
            let view = lock(&self.view);
            let lo = start.max(view.last_purged.map_or(0, |p| p.index.saturating_add(1)));
            let hi = end.min(view.last.map_or(0, |l| l.index.saturating_add(1)));
            if lo >= hi {
                return Ok(Vec::new());
            }
            let pending: BTreeMap<u64, RaftEntry> = view
                .pending
                .range(lo..hi)
                .map(|(i, (_, e))| (*i, e.clone()))
                .collect();
            (lo, hi, pending)
        };
        // Everything in [lo, hi) that is not pending was committed before the view was read
        // (entries beyond the logical end, truncated but not yet deleted, are outside).
        let txn = self.db.begin_read()?;
        let table = txn.open_table(LOG)?;
        for item in table.range(lo..hi)? {
            let (k, v) = item?;
            let index = k.value();
            if let std::collections::btree_map::Entry::Vacant(slot) = pending.entry(index) {
                slot.insert(decode(v.value())?);
            }
        }
        let out: Vec<RaftEntry> = pending.into_values().collect();
        Ok(out)
    }
}

fn writer_loop(shared: &LogShared, rx: &mpsc::Receiver<Op>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_OPS_PER_COMMIT {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let failed = lock(&shared.view).failed.clone();
        let result = match failed {
            Some(e) => Err(e),
            None => write_batch(&shared.db, &batch).map_err(|e| e.to_string()),
        };
        if let Err(e) = &result {
            tracing::error!(error = %e, "raft log commit failed; the log store stops accepting writes");
            let mut view = lock(&shared.view);
            if view.failed.is_none() {
                view.failed = Some(e.clone());
            }
        } else {
            let mut stats = lock(&shared.stats);
            stats.commits += 1;
            if batch.iter().any(|op| !matches!(op, Op::Committed(_))) {
                stats.durable_commits += 1;
            }
            for op in &batch {
                if let Op::Append { entries, .. } = op {
                    stats.append_calls += 1;
                    stats.entries += entries.len() as u64;
                }
            }
            drop(stats);
            let mut view = lock(&shared.view);
            for op in &batch {
                if let Op::Append { entries, .. } = op {
                    for (seq, index, _) in entries {
                        if view.pending.get(index).is_some_and(|(s, _)| s == seq) {
                            view.pending.remove(index);
                        }
                    }
                }
            }
        }
        for op in batch {
            match op {
                Op::Append {
                    done: Completion::Raft(callback),
                    ..
                } => {
                    callback.log_io_completed(result.clone().map_err(std::io::Error::other));
                }
                Op::Append {
                    done: Completion::Ack(ack),
                    ..
                } => {
                    let _ = ack.send(result.clone());
                }
                Op::Vote(_, ack) | Op::Sync(ack) => {
                    let _ = ack.send(result.clone());
                }
                Op::Truncate(_) | Op::Purge(..) | Op::Committed(_) => {}
            }
        }
    }
}

fn write_batch(db: &Database, batch: &[Op]) -> Result<()> {
    let mut txn = db.begin_write()?;
    // A batch holding only `committed` hints need not be durable by itself: it becomes durable
    // with the next commit that is.
    let durable = batch.iter().any(|op| !matches!(op, Op::Committed(_)));
    txn.set_durability(if durable {
        Durability::Immediate
    } else {
        Durability::None
    })?;
    {
        let mut log = txn.open_table(LOG)?;
        let mut meta = txn.open_table(META)?;
        for op in batch {
            match op {
                Op::Append { entries, .. } => {
                    for (_, index, bytes) in entries {
                        log.insert(*index, bytes.as_slice())?;
                    }
                }
                Op::Truncate(from) => log.retain_in(*from.., |_, _| false)?,
                Op::Purge(log_id, bytes) => {
                    log.retain_in(..=log_id.index, |_, _| false)?;
                    meta.insert(KEY_PURGED, bytes.as_slice())?;
                }
                Op::Vote(bytes, _) => {
                    meta.insert(KEY_VOTE, bytes.as_slice())?;
                }
                Op::Committed(bytes) => {
                    meta.insert(KEY_COMMITTED, bytes.as_slice())?;
                }
                Op::Sync(_) => {}
            }
        }
    }
    txn.commit()?;
    Ok(())
}

impl LogReader {
    /// Writer counters since open.
    pub fn stats(&self) -> LogStats {
        *lock(&self.shared.stats)
    }
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> std::result::Result<Vec<RaftEntry>, RaftStorageError> {
        let (start, end) = range_bounds(&range);
        self.shared
            .entries(start, end)
            .map_err(StoreError::read_logs)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> std::result::Result<Vec<RaftEntry>, RaftStorageError> {
        let (start, end) = range_bounds(&range);
        self.shared
            .entries(start, end)
            .map_err(StoreError::read_logs)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(
        &mut self,
    ) -> std::result::Result<LogState<TypeConfig>, RaftStorageError> {
        Ok(self.log_state())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.reader()
    }

    async fn save_vote(&mut self, vote: &Vote) -> std::result::Result<(), RaftStorageError> {
        self.do_save_vote(vote)
            .await
            .map_err(StoreError::write_vote)
    }

    async fn read_vote(&mut self) -> std::result::Result<Option<Vote>, RaftStorageError> {
        self.check_failed().map_err(StoreError::read_vote)?;
        Ok(lock(&self.shared.view).vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId>,
    ) -> std::result::Result<(), RaftStorageError> {
        self.do_save_committed(committed)
            .map_err(StoreError::write_logs)
    }

    async fn read_committed(&mut self) -> std::result::Result<Option<LogId>, RaftStorageError> {
        Ok(lock(&self.shared.view).committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> std::result::Result<(), RaftStorageError>
    where
        I: IntoIterator<Item = RaftEntry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.do_append(entries, Completion::Raft(callback))
            .map_err(StoreError::write_logs)
    }

    async fn truncate(&mut self, log_id: LogId) -> std::result::Result<(), RaftStorageError> {
        self.do_truncate(log_id).map_err(StoreError::write_logs)
    }

    async fn purge(&mut self, log_id: LogId) -> std::result::Result<(), RaftStorageError> {
        self.do_purge(log_id).map_err(StoreError::write_logs)
    }
}
