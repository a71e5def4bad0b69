//! The replicated state machine ([`RaftStateMachine`]): one append-only, Merkle-hashed log per
//! tenant, persisted in `state.redb` (see [`super::schema`] for the tables).
//!
//! `apply` runs a whole batch of committed Raft entries in one write transaction, together
//! with the last applied log id and membership, so the state and its position in the log can
//! never disagree after a crash.
//!
//! Most applies commit **without an fsync**: every applied entry is already durable in the
//! Raft log of a majority (that is what "committed" means), so the state machine only has to be
//! *consistent* after a crash, not current. redb then reopens at its last durable commit, and
//! openraft re-applies the committed log from the stored last-applied id. A durable commit is
//! made at least every [`DURABLE_EVERY`] (which bounds that replay and lets redb reuse freed
//! pages), while each snapshot is built (after its read, before it becomes current, so the log
//! is never purged past durable state), and when the state machine is dropped. One fsync fewer
//! per batch on every node is the largest single saving in the append path.

use std::collections::HashMap;
use std::collections::hash_map::Entry as Slot;
use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use caretrail_crypto::HashValue;
use caretrail_ledger_proofs::{CompactRange, Entry, leaf_hash};
use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, Table, WriteTransaction};
use tokio::io::AsyncSeekExt;

use super::StoreOptions;
use super::at_rest::{self, AtRestKey, seal_stored_entries};
use super::error::{Result, StoreError};
use super::generations::{self, Generations, IndexWriter};
use super::schema::{
    COSIGS, CosigRecord, ENTRIES_V2, FORMAT_VERSION, KEY_FORMAT, KEY_LAST_APPLIED, KEY_MEMBERSHIP,
    KEY_NEXT_TENANT_NO, KEYS, MIN_UPPER_LEVEL, NODES, SM_META, TENANTS, TenantRecord, decode,
    encode, entries_table, entries_table_name, load_frontier, stores_level,
};
use super::snapshot;
use super::snapshot_data::SnapshotData;
use super::tree_cache::TreeCache;
use super::types::{
    AppendRequest, Appended, LedgerCommand, LedgerResponse, LogId, RaftEntry, RaftStorageError,
    Refusal, Snapshot, SnapshotMeta, StoredMembership, TenantRegistered, TenantSpec, TypeConfig,
};
use super::view::LedgerView;

/// File name of the state machine database inside the storage directory.
pub const STATE_FILE: &str = "state.redb";
/// Directory of snapshot files inside the storage directory.
pub const SNAPSHOT_DIR: &str = "snapshots";

/// Longest time between durable commits of the state (the rest commit without fsync).
pub const DURABLE_EVERY: Duration = Duration::from_secs(1);

pub(crate) fn open_state_db(path: &Path, cache_bytes: usize) -> Result<Database> {
    let mut db = Database::builder()
        .set_cache_size(cache_bytes)
        .create(path)?;
    let txn = db.begin_write()?;
    let mut converted = false;
    {
        let mut meta = txn.open_table(SM_META)?;
        let format = meta.get(KEY_FORMAT)?.map(|v| decode::<u32>(v.value()));
        match format {
            None => {
                meta.insert(KEY_FORMAT, encode(&FORMAT_VERSION)?.as_slice())?;
            }
            Some(Ok(FORMAT_VERSION)) => {}
            Some(Ok(5)) => {
                // Format 5 is format 6 with every entry in clear: the node seals them when it
                // opens the store with its key ([`seal_stored_entries`]).
                meta.insert(KEY_FORMAT, encode(&FORMAT_VERSION)?.as_slice())?;
                tracing::info!(
                    "state.redb converted from format 5 to {FORMAT_VERSION}: entries are sealed at rest from now on"
                );
            }
            Some(Ok(4)) => {
                // Format 4's two index tables are generation 0 of format 5 as they are.
                meta.insert(KEY_FORMAT, encode(&FORMAT_VERSION)?.as_slice())?;
                tracing::info!(
                    "state.redb converted from format 4 to {FORMAT_VERSION}: its leaf-hash and request-id indexes are the first index generation"
                );
            }
            Some(Ok(old @ (2 | 3))) => {
                let started = Instant::now();
                let moved = if old == 2 { migrate_from_v2(&txn)? } else { 0 };
                let dropped = drop_lower_levels(&txn)?;
                meta.insert(KEY_FORMAT, encode(&FORMAT_VERSION)?.as_slice())?;
                converted = true;
                tracing::info!(
                    entries_moved = moved,
                    nodes_dropped = dropped,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "state.redb converted from format {old} to {FORMAT_VERSION} (2 → 3: entries moved into per-tenant tables; 3 → 4: tree levels 1–4 no longer stored; 4 → 5: the indexes become generation 0)"
                );
            }
            Some(Ok(other)) => {
                return Err(StoreError::Corrupt(format!(
                    "{} has format {other}, this build reads {FORMAT_VERSION}",
                    path.display()
                )));
            }
            Some(Err(e)) => return Err(e),
        }
        txn.open_table(TENANTS)?;
        txn.open_table(NODES)?;
        generations::create_tables(&txn)?;
        txn.open_table(KEYS)?;
        txn.open_table(COSIGS)?;
    }
    txn.commit()?;
    if converted {
        // The dropped rows' pages (and format 2's shared table, which about doubled the file)
        // are free but still in the file.
        // Only disk space is at stake: on failure the free pages are reused by later appends.
        let started = Instant::now();
        match db.compact() {
            Ok(_) => tracing::info!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                "state.redb compacted after the conversion"
            ),
            Err(error) => tracing::warn!(
                %error,
                "compacting state.redb after the conversion failed; its free pages stay in the file for later appends"
            ),
        }
    }
    Ok(db)
}

/// Format 3 → 4: deletes the stored tree nodes of levels 1–4 (recomputed from leaf hashes
/// since). Returns how many were deleted.
fn drop_lower_levels(txn: &WriteTransaction) -> Result<u64> {
    let mut numbers = Vec::new();
    for item in txn.open_table(TENANTS)?.iter()? {
        let (_, record) = item?;
        numbers.push(decode::<TenantRecord>(record.value())?.no);
    }
    let mut nodes = txn.open_table(NODES)?;
    let mut dropped = 0u64;
    for no in numbers {
        for level in 1..MIN_UPPER_LEVEL {
            nodes.retain_in((no, level, 0u64)..=(no, level, u64::MAX), |_, _| {
                dropped += 1;
                false
            })?;
        }
    }
    Ok(dropped)
}

/// Format 2 → 3: moves each tenant's entries out of the one shared table into its own (in the
/// opening transaction, so an interrupted conversion leaves format 2 to convert again).
fn migrate_from_v2(txn: &WriteTransaction) -> Result<u64> {
    let mut moved = 0u64;
    {
        let legacy = txn.open_table(ENTRIES_V2)?;
        let mut target: Option<(u32, Table<'_, u64, &'static [u8]>)> = None;
        for item in legacy.iter()? {
            let (key, bytes) = item?;
            let (no, index) = key.value();
            if target.as_ref().map(|(open_no, _)| *open_no) != Some(no) {
                target = Some((no, txn.open_table(entries_table(&entries_table_name(no)))?));
            }
            if let Some((_, table)) = target.as_mut() {
                table.insert(index, bytes.value())?;
            }
            moved += 1;
        }
    }
    txn.delete_table(ENTRIES_V2)?;
    Ok(moved)
}

/// State shared by the state machine, its snapshot builders and the read views.
pub(crate) struct SmShared {
    pub(crate) dir: PathBuf,
    db: RwLock<Arc<Database>>,
    /// Serialises snapshot file operations (build, install, read of the current one).
    pub(crate) snapshot_lock: Mutex<()>,
    counter: AtomicU64,
    /// When the state was last committed durably.
    last_durable: Mutex<Instant>,
    /// Ledger entries now and at the last snapshot (for the snapshot schedule).
    pub(crate) counts: EntryCounts,
    /// Tree nodes kept in memory for proofs (valid for any database of this log: nodes never
    /// change).
    pub(crate) tree_cache: Arc<TreeCache>,
    /// redb's page cache for the state database, also when a snapshot replaces it.
    pub(crate) cache_bytes: usize,
    /// Entries per index generation ([`generations`]).
    pub(crate) generation_entries: u64,
    /// Seals entries at rest ([`at_rest`]).
    pub(crate) at_rest: Option<Arc<AtRestKey>>,
}

impl SmShared {
    /// The current database (replaced as a whole when a snapshot is installed).
    pub(crate) fn db(&self) -> Arc<Database> {
        self.db
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn replace_db(&self, db: Database) {
        *self
            .db
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(db);
        // The new database holds the same log, so the cached nodes would still be right;
        // dropping them keeps what is served tied to what is on disk now. Whoever switched
        // databases reloads them (open, install_snapshot).
        self.tree_cache.clear();
    }

    /// Starts loading the tree nodes kept in memory for proofs, in the background (an
    /// optimisation: until they are in, and on failure, proofs read them from the store).
    pub(crate) fn load_tree_cache(&self) {
        self.tree_cache.start_loading(self.db());
    }

    /// Whether the next apply should commit durably.
    fn durable_due(&self) -> bool {
        self.last_durable
            .lock()
            .map_or(true, |at| at.elapsed() >= DURABLE_EVERY)
    }

    fn durable_done(&self, at: Instant) {
        if let Ok(mut last) = self.last_durable.lock() {
            *last = (*last).max(at);
        }
    }

    /// Makes every commit so far durable (one empty fsync'd transaction).
    pub(crate) fn make_durable(&self) -> Result<()> {
        let started = Instant::now();
        let mut txn = self.db().begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        txn.commit()?;
        self.durable_done(started);
        Ok(())
    }

    /// A process-unique number for temporary file names and snapshot ids.
    pub(crate) fn next_id(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn state_path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    pub(crate) fn snapshot_dir(&self) -> PathBuf {
        self.dir.join(SNAPSHOT_DIR)
    }
}

/// A tenant as the apply path needs it: its record and the right frontier of its tree.
#[derive(Debug, Clone)]
pub(crate) struct TenantState {
    pub record: TenantRecord,
    pub frontier: CompactRange,
}

pub(crate) type TenantCache = HashMap<String, TenantState>;

/// What the apply path keeps in memory besides the database: tenants and index generations.
pub(crate) struct ApplyCache {
    pub tenants: TenantCache,
    pub generations: Generations,
}

impl ApplyCache {
    pub(crate) fn load(shared: &SmShared) -> Result<Self> {
        Self::with_tenants(shared, load_tenants(&shared.db())?)
    }

    /// With `tenants` already read from the database in use (a snapshot install's).
    fn with_tenants(shared: &SmShared, tenants: TenantCache) -> Result<Self> {
        Ok(Self {
            tenants,
            generations: Generations::load(&shared.db(), shared.generation_entries)?,
        })
    }

    /// A placeholder while the real one is lent to a blocking task.
    fn placeholder() -> Self {
        Self {
            tenants: TenantCache::new(),
            generations: Generations::empty(1),
        }
    }
}

pub(crate) fn total_entries(tenants: &TenantCache) -> u64 {
    tenants.values().map(|t| t.record.size).sum()
}

/// Ledger entries (all tenants) in the state and in the last snapshot taken or installed.
#[derive(Default)]
pub(crate) struct EntryCounts {
    now: AtomicU64,
    at_snapshot: AtomicU64,
}

impl EntryCounts {
    pub(crate) fn reset(&self, entries: u64) {
        self.start(entries, entries);
    }

    pub(crate) fn start(&self, entries: u64, at_snapshot: u64) {
        self.now.store(entries, Ordering::Relaxed);
        self.at_snapshot.store(at_snapshot, Ordering::Relaxed);
    }

    fn applied(&self, added: u64) {
        self.now.fetch_add(added, Ordering::Relaxed);
    }

    pub(crate) fn snapshot_taken(&self, entries: u64) {
        self.at_snapshot.store(entries, Ordering::Relaxed);
    }

    /// (entries now, entries in the last snapshot)
    pub(crate) fn get(&self) -> (u64, u64) {
        (
            self.now.load(Ordering::Relaxed),
            self.at_snapshot.load(Ordering::Relaxed),
        )
    }
}

/// Loads every tenant's record and frontier.
pub(crate) fn load_tenants(db: &Database) -> Result<TenantCache> {
    let txn = db.begin_read()?;
    let tenants = txn.open_table(TENANTS)?;
    let nodes = txn.open_table(NODES)?;
    let mut out = HashMap::new();
    for item in tenants.iter()? {
        let (k, v) = item?;
        let name = k.value().to_string();
        let record: TenantRecord = decode(v.value())?;
        let frontier = load_frontier(&nodes, &name, &record)?;
        out.insert(name, TenantState { record, frontier });
    }
    Ok(out)
}

/// The ledger state machine.
pub struct LedgerStateMachine {
    shared: Arc<SmShared>,
    cache: ApplyCache,
}

impl LedgerStateMachine {
    /// Opens (or creates) the state machine under `dir` (`state.redb` and `snapshots/`).
    ///
    /// Cleans up files of interrupted snapshot builds, transfers and installs, and refuses a
    /// state that is behind the current snapshot (see [`super::snapshot`]).
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_with(dir, &StoreOptions::default())
    }

    /// [`Self::open`] with explicit options.
    pub fn open_with(dir: &Path, options: &StoreOptions) -> Result<Self> {
        std::fs::create_dir_all(dir.join(SNAPSHOT_DIR))?;
        snapshot::remove_temporaries(dir)?;
        let cache_bytes = options.state_cache_bytes;
        let mut db = open_state_db(&dir.join(STATE_FILE), cache_bytes)?;
        if let Some(key) = &options.at_rest_key {
            seal_stored_entries(&mut db, key)?;
        }
        let shared = Arc::new(SmShared {
            dir: dir.to_path_buf(),
            db: RwLock::new(Arc::new(db)),
            snapshot_lock: Mutex::new(()),
            counter: AtomicU64::new(0),
            last_durable: Mutex::new(Instant::now()),
            counts: EntryCounts::default(),
            tree_cache: Arc::new(TreeCache::new(options.leaf_hash_cache_bytes)),
            cache_bytes,
            generation_entries: options.index_generation_entries,
            at_rest: options.at_rest_key.clone(),
        });
        snapshot::upgrade_legacy(&shared)?;
        snapshot::check_state_covers_snapshot(&shared)?;
        let cache = ApplyCache::load(&shared)?;
        shared.load_tree_cache();
        let entries = total_entries(&cache.tenants);
        let in_snapshot = snapshot::current_entries(&shared)?.unwrap_or(entries);
        shared.counts.start(entries, in_snapshot);
        Ok(Self { shared, cache })
    }

    /// A read handle (entries, roots, proofs, verification); cheap to clone, usable from any
    /// thread, and it follows snapshot installs.
    pub fn view(&self) -> LedgerView {
        LedgerView::new(self.shared.clone())
    }

    /// Last applied log id and membership as stored.
    pub fn applied(&self) -> Result<(Option<LogId>, StoredMembership)> {
        read_applied(&self.shared.db())
    }

    /// Applies Raft entries (blocking). [`RaftStateMachine::apply`] runs this on a blocking
    /// thread.
    pub fn apply_entries(&mut self, entries: Vec<RaftEntry>) -> Result<Vec<LedgerResponse>> {
        let result = apply_blocking(&self.shared, &mut self.cache, entries);
        if result.is_err() {
            self.reload_cache()?;
        }
        result
    }

    /// Rereads what the apply path caches from the database in use: after a failed apply
    /// (whose changes to the cache were not committed) or a snapshot install.
    fn reload_cache(&mut self) -> Result<()> {
        self.cache = ApplyCache::load(&self.shared)?;
        Ok(())
    }
}

pub(crate) fn read_applied(db: &Database) -> Result<(Option<LogId>, StoredMembership)> {
    let txn = db.begin_read()?;
    let meta = txn.open_table(SM_META)?;
    let last_applied = match meta.get(KEY_LAST_APPLIED)? {
        Some(v) => decode(v.value())?,
        None => None,
    };
    let membership = match meta.get(KEY_MEMBERSHIP)? {
        Some(v) => decode(v.value())?,
        None => StoredMembership::default(),
    };
    Ok((last_applied, membership))
}

struct WriteTables<'t> {
    txn: &'t WriteTransaction,
    /// Seals the entries written ([`at_rest`]).
    at_rest: Option<&'t AtRestKey>,
    /// Per-tenant entries tables, opened on a tenant's first append in the transaction.
    entries: HashMap<u32, Table<'t, u64, &'static [u8]>>,
    /// Tree nodes written in this transaction at levels the [`TreeCache`] may keep, added to
    /// it once the transaction has committed.
    new_nodes: Vec<(u32, u8, u64, [u8; 32])>,
    nodes: Table<'t, (u32, u8, u64), [u8; 32]>,
    indexes: IndexWriter<'t>,
    keys: super::keys::KeysTable<'t>,
    cosigs: Table<'t, (u32, u64, &'static str), &'static [u8]>,
}

impl<'t> WriteTables<'t> {
    fn entries(&mut self, no: u32) -> Result<&mut Table<'t, u64, &'static [u8]>> {
        Ok(match self.entries.entry(no) {
            Slot::Occupied(slot) => slot.into_mut(),
            Slot::Vacant(slot) => slot.insert(
                self.txn
                    .open_table(entries_table(&entries_table_name(no)))?,
            ),
        })
    }
}

/// Tenants touched by the batch being applied: copies of the cached state, written to the
/// cache only once the transaction has committed.
struct Overlay<'c> {
    cache: &'c TenantCache,
    changed: TenantCache,
    next_tenant_no: u32,
    next_no_changed: bool,
}

impl Overlay<'_> {
    fn get_mut(&mut self, tenant: &str) -> Option<&mut TenantState> {
        if !self.changed.contains_key(tenant) {
            let state = self.cache.get(tenant)?.clone();
            self.changed.insert(tenant.to_string(), state);
        }
        self.changed.get_mut(tenant)
    }
}

/// On error, `cache.generations` may count uncommitted inserts: reload it.
fn apply_blocking(
    shared: &SmShared,
    apply_cache: &mut ApplyCache,
    entries: Vec<RaftEntry>,
) -> Result<Vec<LedgerResponse>> {
    let cache = &mut apply_cache.tenants;
    let generations = &mut apply_cache.generations;
    let db = shared.db();
    let started = Instant::now();
    let durable = shared.durable_due();
    let mut txn = db.begin_write()?;
    txn.set_durability(if durable {
        Durability::Immediate
    } else {
        Durability::None
    })?;
    let mut responses = Vec::with_capacity(entries.len());
    let (changed, new_nodes) = {
        let mut meta = txn.open_table(SM_META)?;
        let mut tenants = txn.open_table(TENANTS)?;
        let next_tenant_no = match meta.get(KEY_NEXT_TENANT_NO)? {
            Some(v) => decode(v.value())?,
            None => 0u32,
        };
        let mut tables = WriteTables {
            txn: &txn,
            at_rest: shared.at_rest.as_deref(),
            entries: HashMap::new(),
            new_nodes: Vec::new(),
            nodes: txn.open_table(NODES)?,
            indexes: IndexWriter::open(&txn, generations)?,
            keys: txn.open_table(KEYS)?,
            cosigs: txn.open_table(COSIGS)?,
        };
        let mut overlay = Overlay {
            cache,
            changed: HashMap::new(),
            next_tenant_no,
            next_no_changed: false,
        };
        let mut last_applied = None;
        let mut membership = None;
        for entry in entries {
            last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => responses.push(LedgerResponse::Empty),
                EntryPayload::Membership(m) => {
                    membership = Some(StoredMembership::new(Some(entry.log_id), m));
                    responses.push(LedgerResponse::Empty);
                }
                EntryPayload::Normal(LedgerCommand::RegisterTenant(spec)) => {
                    responses.push(LedgerResponse::Tenant(register_tenant(&mut overlay, spec)?));
                }
                EntryPayload::Normal(LedgerCommand::AppendBatch { entries }) => {
                    let mut results = Vec::with_capacity(entries.len());
                    for req in entries {
                        results.push(append_one(&mut tables, &mut overlay, generations, req)?);
                    }
                    responses.push(LedgerResponse::Appended(results));
                }
                EntryPayload::Normal(LedgerCommand::AddCosignature(spec)) => {
                    responses.push(LedgerResponse::Cosigned(add_cosignature(
                        &mut tables,
                        &mut overlay,
                        spec,
                    )?));
                }
            }
        }
        for (name, state) in &overlay.changed {
            tenants.insert(name.as_str(), encode(&state.record)?.as_slice())?;
        }
        if overlay.next_no_changed {
            meta.insert(
                KEY_NEXT_TENANT_NO,
                encode(&overlay.next_tenant_no)?.as_slice(),
            )?;
        }
        if let Some(log_id) = last_applied {
            meta.insert(KEY_LAST_APPLIED, encode(&Some(log_id))?.as_slice())?;
        }
        if let Some(m) = membership {
            meta.insert(KEY_MEMBERSHIP, encode(&m)?.as_slice())?;
        }
        (overlay.changed, tables.new_nodes)
    };
    txn.commit()?;
    if durable {
        shared.durable_done(started);
    }
    shared.tree_cache.extend(&new_nodes);
    let grown: u64 = changed
        .iter()
        .map(|(name, state)| {
            let before = cache.get(name).map_or(0, |s| s.record.size);
            state.record.size.saturating_sub(before)
        })
        .sum();
    shared.counts.applied(grown);
    cache.extend(changed);
    Ok(responses)
}

fn check_text(what: &str, value: &str, min: usize, max: usize) -> std::result::Result<(), String> {
    if value.len() < min || value.len() > max {
        return Err(format!(
            "{what} must be {min}..={max} bytes, got {}",
            value.len()
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("{what} contains a control character"));
    }
    Ok(())
}

fn register_tenant(
    overlay: &mut Overlay<'_>,
    spec: TenantSpec,
) -> Result<std::result::Result<TenantRegistered, Refusal>> {
    let invalid = |reason: String| Ok(Err(Refusal::InvalidTenant { reason }));
    if let Err(reason) = check_text(
        "tenant",
        &spec.tenant,
        1,
        caretrail_ledger_proofs::entry::MAX_TENANT_LEN,
    ) {
        return invalid(reason);
    }
    if let Err(reason) = check_text("origin", &spec.origin, 1, 255) {
        return invalid(reason);
    }
    if let Err(reason) = check_text("checkpoint key", &spec.checkpoint_key, 0, 1024) {
        return invalid(reason);
    }
    let registrar = match caretrail_crypto::VerifyingKey::from_spki_pem(&spec.registrar_key) {
        Ok(key) => key,
        Err(e) => return invalid(format!("registrar key: {e}")),
    };
    if let Some(existing) = overlay.get_mut(&spec.tenant) {
        let suite = existing.record.suite;
        return Ok(if suite == spec.suite {
            Ok(TenantRegistered {
                tenant: spec.tenant,
                suite,
                created: false,
            })
        } else {
            Err(Refusal::TenantSuiteConflict {
                tenant: spec.tenant,
                existing: suite,
            })
        });
    }
    let no = overlay.next_tenant_no;
    let Some(next) = no.checked_add(1) else {
        return invalid("no tenant numbers left".into());
    };
    overlay.next_tenant_no = next;
    overlay.next_no_changed = true;
    let record = TenantRecord {
        no,
        suite: spec.suite,
        size: 0,
        origin: spec.origin,
        checkpoint_key: spec.checkpoint_key,
        registrar_key: registrar.to_spki_der(),
        registrar_key_id: registrar.key_id().to_hex(),
    };
    overlay.changed.insert(
        spec.tenant.clone(),
        TenantState {
            record,
            frontier: CompactRange::new(spec.suite),
        },
    );
    Ok(Ok(TenantRegistered {
        tenant: spec.tenant,
        suite: spec.suite,
        created: true,
    }))
}

fn append_one(
    tables: &mut WriteTables<'_>,
    overlay: &mut Overlay<'_>,
    generations: &mut Generations,
    req: AppendRequest,
) -> Result<std::result::Result<Appended, Refusal>> {
    let Some(state) = overlay.get_mut(&req.tenant) else {
        return Ok(Err(Refusal::UnknownTenant { tenant: req.tenant }));
    };
    let at_rest_key = tables.at_rest;
    let no = state.record.no;
    let suite = state.record.suite;

    // Hashed once, for the lookup and the insert.
    let request_hash = (!req.request_id.is_empty())
        .then(|| generations::request_hash(no, &req.submitter, &req.request_id));
    if let Some(hash) = request_hash {
        let prior =
            tables
                .indexes
                .find_request(generations, no, &req.submitter, &req.request_id, hash)?;
        if let Some(index) = prior {
            let stored = tables.entries(no)?.get(index)?.ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "tenant {:?}: request index points at missing entry {index}",
                    req.tenant
                ))
            })?;
            let bytes =
                at_rest::from_store(at_rest_key, &req.tenant, index, stored.value())?.into_owned();
            drop(stored);
            let existing = Entry::decode(&bytes).map_err(|e| {
                StoreError::Corrupt(format!(
                    "tenant {:?}: entry {index} does not decode: {e}",
                    req.tenant
                ))
            })?;
            // Signatures may be randomised (ECDSA, SM2), so a retry is recognised by what was
            // signed, not by the signature bytes.
            if existing.kind == req.kind
                && existing.key_id == req.key_id
                && existing.payload == req.payload
            {
                return Ok(Ok(Appended {
                    tenant: req.tenant,
                    index,
                    suite,
                    leaf_hash: *leaf_hash(suite, &bytes).as_bytes(),
                    duplicate: true,
                }));
            }
            return Ok(Err(Refusal::RequestIdConflict {
                submitter: req.submitter,
                request_id: req.request_id,
                index,
            }));
        }
    }

    let key_change = match super::keys::check(
        &tables.keys,
        no,
        &state.record.registrar_key_id,
        &req.kind,
        &req.submitter,
        &req.key_id,
        &req.payload,
    )? {
        Ok(change) => change,
        Err(refusal) => return Ok(Err(refusal)),
    };

    let index = state.frontier.size();
    if index == u64::MAX {
        return Ok(Err(Refusal::LogFull { tenant: req.tenant }));
    }
    let entry = Entry {
        tenant: req.tenant,
        index,
        timestamp_ms: req.timestamp_ms,
        kind: req.kind,
        submitter: req.submitter,
        request_id: req.request_id,
        key_id: req.key_id,
        payload: req.payload,
        signature: req.signature,
    };
    let bytes = match entry.encode() {
        Ok(b) => b,
        Err(e) => {
            return Ok(Err(Refusal::InvalidEntry {
                reason: e.to_string(),
            }));
        }
    };
    let leaf: HashValue = leaf_hash(suite, &bytes);
    let created = state.frontier.append(leaf)?;
    let stored = at_rest::to_store(at_rest_key, &entry.tenant, index, &bytes)?;
    tables.entries(no)?.insert(index, stored.as_slice())?;
    for (id, hash) in created.into_iter().filter(|(id, _)| stores_level(id.level)) {
        tables
            .nodes
            .insert((no, id.level, id.index), *hash.as_bytes())?;
        tables
            .new_nodes
            .push((no, id.level, id.index, *hash.as_bytes()));
    }
    if let Some(change) = key_change {
        super::keys::apply(&mut tables.keys, no, index, change)?;
    }
    let request =
        request_hash.map(|hash| (entry.submitter.as_str(), entry.request_id.as_str(), hash));
    tables
        .indexes
        .insert(generations, no, leaf.as_bytes(), request, index)?;
    state.record.size = state.frontier.size();
    Ok(Ok(Appended {
        tenant: entry.tenant,
        index,
        suite,
        leaf_hash: *leaf.as_bytes(),
        duplicate: false,
    }))
}

/// Builds snapshots from a consistent read of the state database.
pub struct LedgerSnapshotBuilder {
    shared: Arc<SmShared>,
}

impl RaftSnapshotBuilder<TypeConfig> for LedgerSnapshotBuilder {
    async fn build_snapshot(&mut self) -> std::result::Result<Snapshot, RaftStorageError> {
        let shared = self.shared.clone();
        let (meta, manifest) = {
            let shared = shared.clone();
            tokio::task::spawn_blocking(move || snapshot::build(&shared))
                .await
                .map_err(|e| StoreError::from(e).write_snapshot())?
                .map_err(StoreError::write_snapshot)?
        };
        Ok(Snapshot {
            meta,
            snapshot: Box::new(SnapshotData::local(&shared, manifest)),
        })
    }
}

impl Drop for LedgerStateMachine {
    fn drop(&mut self) {
        // The loader holds the database open, which would keep the next open out.
        self.shared.tree_cache.stop_loading();
        // A clean stop leaves nothing for the next start to re-apply.
        if let Err(e) = self.shared.make_durable() {
            tracing::warn!(error = %e, "making the ledger state durable at shutdown failed");
        }
    }
}

impl RaftStateMachine<TypeConfig> for LedgerStateMachine {
    type SnapshotBuilder = LedgerSnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> std::result::Result<(Option<LogId>, StoredMembership), RaftStorageError> {
        self.applied().map_err(StoreError::read_sm)
    }

    async fn apply<I>(
        &mut self,
        entries: I,
    ) -> std::result::Result<Vec<LedgerResponse>, RaftStorageError>
    where
        I: IntoIterator<Item = RaftEntry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<RaftEntry> = entries.into_iter().collect();
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let shared = self.shared.clone();
        let mut cache = std::mem::replace(&mut self.cache, ApplyCache::placeholder());
        let joined = tokio::task::spawn_blocking(move || {
            let result = apply_blocking(&shared, &mut cache, entries);
            (result, cache)
        })
        .await;
        match joined {
            Ok((Ok(responses), cache)) => {
                self.cache = cache;
                Ok(responses)
            }
            Ok((Err(e), _)) => {
                self.reload_cache().map_err(StoreError::read_sm)?;
                Err(e.write_sm())
            }
            Err(e) => {
                // The cache went with the failed task; rebuild it from the database.
                self.reload_cache().map_err(StoreError::read_sm)?;
                Err(StoreError::from(e).write_sm())
            }
        }
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        LedgerSnapshotBuilder {
            shared: self.shared.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> std::result::Result<Box<SnapshotData>, RaftStorageError> {
        let path = snapshot::receive_path(&self.shared);
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(|e| StoreError::from(e).write_snapshot())?;
        // Only the handle is needed: unlinked, an aborted transfer leaves nothing behind.
        tokio::fs::remove_file(&path)
            .await
            .map_err(|e| StoreError::from(e).write_snapshot())?;
        Ok(Box::new(SnapshotData::received(file)))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<SnapshotData>,
    ) -> std::result::Result<(), RaftStorageError> {
        let mut file = snapshot
            .into_file()
            .await
            .map_err(|e| StoreError::from(e).write_snapshot())?;
        file.seek(SeekFrom::Start(0))
            .await
            .map_err(|e| StoreError::from(e).write_snapshot())?;
        let file = file.into_std().await;
        let shared = self.shared.clone();
        let meta = meta.clone();
        let installed = tokio::task::spawn_blocking(move || {
            let installed = snapshot::install(&shared, &meta, file);
            // Whether or not the install got as far as switching databases, the tree cache
            // must hold the one in use now (a switch empties it).
            shared.load_tree_cache();
            installed
        })
        .await
        .map_err(StoreError::from)
        .and_then(|r| r);
        match installed {
            Ok(tenants) => {
                // The import wrote the index generations; their filters are read back.
                self.cache =
                    ApplyCache::with_tenants(&self.shared, tenants).map_err(StoreError::read_sm)?;
                Ok(())
            }
            Err(e) => {
                // The cache must follow whichever database is in use now.
                self.reload_cache().map_err(StoreError::read_sm)?;
                Err(e.write_snapshot())
            }
        }
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> std::result::Result<Option<Snapshot>, RaftStorageError> {
        let shared = self.shared.clone();
        let current = {
            let shared = shared.clone();
            tokio::task::spawn_blocking(move || snapshot::current(&shared))
                .await
                .map_err(|e| StoreError::from(e).read_snapshot())?
                .map_err(StoreError::read_snapshot)?
        };
        Ok(current.map(|(meta, manifest)| Snapshot {
            meta,
            snapshot: Box::new(SnapshotData::local(&shared, manifest)),
        }))
    }
}

fn add_cosignature(
    tables: &mut WriteTables<'_>,
    overlay: &mut Overlay<'_>,
    spec: super::types::CosignatureSpec,
) -> Result<std::result::Result<(), Refusal>> {
    let Some(state) = overlay.get_mut(&spec.tenant) else {
        return Ok(Err(Refusal::UnknownTenant {
            tenant: spec.tenant,
        }));
    };
    if spec.size == 0 || spec.size > state.record.size {
        return Ok(Err(Refusal::InvalidCosignature {
            reason: format!(
                "tree size {} is not in 1..={}",
                spec.size, state.record.size
            ),
        }));
    }
    if let Err(reason) = check_text("witness", &spec.witness, 1, 255)
        .and_then(|()| check_text("cosignature line", &spec.line, 1, 4096))
    {
        return Ok(Err(Refusal::InvalidCosignature { reason }));
    }
    let no = state.record.no;
    let record = CosigRecord {
        root: spec.root,
        line: spec.line,
    };
    tables.cosigs.insert(
        (no, spec.size, spec.witness.as_str()),
        encode(&record)?.as_slice(),
    )?;
    Ok(Ok(()))
}
