//! Snapshots: a self-contained stream of the state machine for a node that needs one, and on
//! disk only a small manifest of what the stream holds.
//!
//! # Stream format (version 1), what a follower receives
//!
//! ```text
//! "CTLSNAP" 0x01                          magic and version
//! record*                                  u8 tag ‖ u32be body length ‖ body
//!   tag 1  META    postcard(SnapshotHeader: openraft SnapshotMeta, next tenant number)
//!   tag 2  TENANT  postcard(SnapshotTenant: id, record, root hash)    then its entries:
//!   tag 3  ENTRY   u32be tenant no ‖ u64be index ‖ canonical entry bytes
//!   tag 4  COSIG   postcard(SnapshotCosig: tenant no, tree size, witness, record)
//!   tag 0  END     u64be number of records before END ‖ SHA-256 of every byte before END
//! ```
//!
//! META comes first; each tenant's entries follow its TENANT record in index order, starting
//! at 0, then its witness cosignatures. Derived data (tree nodes, leaf-hash, request-id and
//! key indexes) is not shipped but rebuilt
//! while installing, and each tenant's rebuilt root must equal the root in its TENANT record;
//! entries must decode strictly and carry their tenant and index. Nothing after END is allowed.
//! A snapshot that fails any check is refused and the current state is left as it was.
//!
//! # Manifest: the snapshot as stored
//!
//! The ledger is append-only: entry `i` of a tenant never changes once applied, so a snapshot
//! need not copy entries. `snapshots/current.snap` is the same record framing with the magic
//! `"CTLSMAN" 0x01` and without ENTRY records: META, each TENANT (its size and root at the
//! snapshot) with its COSIG records, END. Taking a snapshot therefore costs a durable commit
//! and a write of a few hundred bytes per tenant (plus its cosignatures), whatever the
//! ledger's size. Only when a snapshot is *sent* is the stream written out: a temporary,
//! already unlinked file (freed when the transfer ends) filled from the live state, entries
//! `0..size` per tenant, each tenant's root recomputed and checked against the manifest, so a
//! node whose stored entries were altered refuses to send them.
//!
//! This relies on the state never being behind its manifest: a build makes the state durable
//! after its read and before the manifest becomes current, and an install switches to the
//! new state before writing the manifest. A node that finds its state behind the manifest
//! (its `state.redb` lost or replaced) refuses to start; it has to be re-seeded from a peer
//! (docs/OPERATIONS.md).
//!
//! # Files
//!
//! Builds and installs write a `.tmp` file, fsync it and rename it over `current.snap` (the
//! manifest carries the openraft metadata, so data and metadata change in one rename). An
//! install imports into `state.redb.new`, commits it durably, renames it over `state.redb`,
//! fsyncs the directory and only then writes the manifest. Temporaries of interrupted
//! operations are removed at the next open.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use caretrail_crypto::{HASH_LEN, HashValue, Hasher, Suite};
use caretrail_ledger_proofs::{CompactRange, Entry, leaf_hash};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::at_rest::{AtRestKey, from_store, to_store};
use super::error::{Result, StoreError};
use super::generations::{Generations, IndexWriter, request_hash};
use super::schema::{
    COSIGS, CosigRecord, KEY_LAST_APPLIED, KEY_MEMBERSHIP, KEY_NEXT_TENANT_NO, KEY_SEALED_AT_REST,
    KEYS, NODES, SM_META, TENANTS, TenantRecord, decode, encode, entries_table, entries_table_name,
    load_frontier, read_entries, stores_level,
};
use super::state::{
    SmShared, TenantCache, load_tenants, open_state_db, read_applied, total_entries,
};
use super::types::SnapshotMeta;

const MAGIC: &[u8; 8] = b"CTLSNAP\x01";
const MANIFEST_MAGIC: &[u8; 8] = b"CTLSMAN\x01";
const TAG_END: u8 = 0;
const TAG_META: u8 = 1;
const TAG_TENANT: u8 = 2;
const TAG_ENTRY: u8 = 3;
const TAG_COSIG: u8 = 4;
/// Largest record body accepted (an entry is at most ~1.1 MiB).
const MAX_RECORD: usize = 4 * 1024 * 1024;
/// Entries read per read transaction when a snapshot is written out for sending.
const STREAM_CHUNK: u64 = 50_000;
/// Entries imported per intermediate (non-durable) transaction.
const IMPORT_CHUNK: u64 = 50_000;

const CURRENT: &str = "current.snap";
const NEW_STATE: &str = "state.redb.new";

#[derive(Debug, Serialize, Deserialize)]
struct SnapshotHeader {
    meta: SnapshotMeta,
    next_tenant_no: u32,
}

#[derive(Debug, Serialize, Deserialize)]
struct SnapshotTenant {
    tenant: String,
    record: TenantRecord,
    root: [u8; HASH_LEN],
}

#[derive(Debug, Serialize, Deserialize)]
struct SnapshotCosig {
    no: u32,
    size: u64,
    witness: String,
    record: CosigRecord,
}

struct HashingWriter<W: Write> {
    inner: BufWriter<W>,
    hasher: Hasher,
    records: u64,
}

impl<W: Write> HashingWriter<W> {
    fn new(out: W) -> Self {
        Self {
            inner: BufWriter::with_capacity(1 << 20, out),
            hasher: Hasher::new(Suite::Intl),
            records: 0,
        }
    }

    fn record(&mut self, tag: u8, body: &[&[u8]]) -> Result<()> {
        let len: usize = body.iter().map(|b| b.len()).sum();
        let len = u32::try_from(len)
            .map_err(|_| StoreError::Engine("snapshot record too large".into()))?;
        self.write(&[tag])?;
        self.write(&len.to_be_bytes())?;
        for b in body {
            self.write(b)?;
        }
        self.records += 1;
        Ok(())
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.hasher.update(bytes);
        self.inner.write_all(bytes)?;
        Ok(())
    }

    /// Writes END (the record count and the digest of everything before it) and flushes.
    fn finish(mut self) -> Result<()> {
        let digest = self.hasher.clone().finalize();
        let records = self.records;
        self.record(TAG_END, &[&records.to_be_bytes(), digest.as_bytes()])?;
        self.inner
            .into_inner()
            .map_err(|e| StoreError::Io(e.into_error()))?
            .flush()?;
        Ok(())
    }
}

struct HashingReader<R: Read> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> HashingReader<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Hasher::new(Suite::Intl),
        }
    }

    fn exact(&mut self, buf: &mut [u8]) -> Result<()> {
        self.inner.read_exact(buf).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                StoreError::BadSnapshot("truncated".into())
            } else {
                StoreError::Io(e)
            }
        })?;
        self.hasher.update(buf);
        Ok(())
    }

    /// Reads a record header and body; returns the tag, the body and the hash of everything
    /// before the record.
    fn record(&mut self) -> Result<(u8, Vec<u8>, HashValue)> {
        let before = self.hasher.clone().finalize();
        let mut head = [0u8; 5];
        self.exact(&mut head)?;
        let [tag, l0, l1, l2, l3] = head;
        let len = usize::try_from(u32::from_be_bytes([l0, l1, l2, l3])).unwrap_or(usize::MAX);
        if len > MAX_RECORD {
            return Err(StoreError::BadSnapshot(format!(
                "record of {len} bytes exceeds the limit"
            )));
        }
        let mut body = vec![0u8; len];
        self.exact(&mut body)?;
        Ok((tag, body, before))
    }
}

fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

fn unique_suffix(shared: &SmShared) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{nanos}-{}", shared.next_id())
}

/// Where [`super::LedgerStateMachine`] receives a snapshot from the leader.
pub(crate) fn receive_path(shared: &SmShared) -> std::path::PathBuf {
    shared
        .snapshot_dir()
        .join(format!("recv-{}.tmp", unique_suffix(shared)))
}

/// Removes leftovers of interrupted builds, transfers and installs.
pub(crate) fn remove_temporaries(dir: &Path) -> Result<()> {
    let new_state = dir.join(NEW_STATE);
    if new_state.exists() {
        std::fs::remove_file(&new_state)?;
    }
    let snaps = dir.join(super::state::SNAPSHOT_DIR);
    if snaps.exists() {
        for item in std::fs::read_dir(&snaps)? {
            let path = item?.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                std::fs::remove_file(&path)?;
            }
        }
    }
    Ok(())
}

/// Writes the manifest of the state visible in one read transaction to `out` (module docs).
/// `snapshot_id` names the snapshot. Returns its metadata and number of ledger entries.
fn write_manifest(
    db: &Database,
    out: impl Write,
    snapshot_id: String,
) -> Result<(SnapshotMeta, u64)> {
    let txn = db.begin_read()?;
    let meta_table = txn.open_table(SM_META)?;
    let last_log_id = match meta_table.get(KEY_LAST_APPLIED)? {
        Some(v) => decode(v.value())?,
        None => None,
    };
    let last_membership = match meta_table.get(KEY_MEMBERSHIP)? {
        Some(v) => decode(v.value())?,
        None => Default::default(),
    };
    let next_tenant_no: u32 = match meta_table.get(KEY_NEXT_TENANT_NO)? {
        Some(v) => decode(v.value())?,
        None => 0,
    };
    let meta = SnapshotMeta {
        last_log_id,
        last_membership,
        snapshot_id,
    };
    let tenants = txn.open_table(TENANTS)?;
    let nodes = txn.open_table(NODES)?;
    let cosigs = txn.open_table(COSIGS)?;

    let mut w = HashingWriter::new(out);
    w.write(MANIFEST_MAGIC)?;
    let mut ledger_entries = 0u64;
    w.record(
        TAG_META,
        &[&encode(&SnapshotHeader {
            meta: meta.clone(),
            next_tenant_no,
        })?],
    )?;
    for item in tenants.iter()? {
        let (k, v) = item?;
        let tenant = k.value().to_string();
        let record: TenantRecord = decode(v.value())?;
        let root = load_frontier(&nodes, &tenant, &record)?.root();
        let no = record.no;
        ledger_entries += record.size;
        w.record(
            TAG_TENANT,
            &[&encode(&SnapshotTenant {
                tenant,
                record,
                root: *root.as_bytes(),
            })?],
        )?;
        for item in cosigs.range((no, 0u64, "")..=(no, u64::MAX, "\u{10ffff}"))? {
            let (k, v) = item?;
            let (_, size, witness) = k.value();
            let record: CosigRecord = decode(v.value())?;
            w.record(
                TAG_COSIG,
                &[&encode(&SnapshotCosig {
                    no,
                    size,
                    witness: witness.to_string(),
                    record,
                })?],
            )?;
        }
    }
    w.finish()?;
    Ok((meta, ledger_entries))
}

/// Writes the stream of the snapshot described by `manifest` to `out`, reading the entries
/// from `db` (which holds at least them: the ledger is append-only). Each tenant's entries
/// must rebuild the root the manifest recorded, so altered entries are never sent.
///
/// Entries are read in chunks of [`STREAM_CHUNK`], each in its own read transaction (entries
/// never change, so the chunks join up), so that a long write-out does not keep redb from
/// reusing pages freed meanwhile; `cancelled` is checked between chunks.
fn write_stream(
    db: &Database,
    key: Option<&AtRestKey>,
    manifest: &[u8],
    out: impl Write,
    cancelled: &AtomicBool,
) -> Result<()> {
    let mut w = HashingWriter::new(out);
    w.write(MAGIC)?;
    for (tag, body) in manifest_records(manifest)? {
        w.record(tag, &[&body])?;
        if tag != TAG_TENANT {
            continue;
        }
        let st: SnapshotTenant = decode(&body)?;
        let no = st.record.no;
        let mut frontier = CompactRange::new(st.record.suite);
        'chunks: while frontier.size() < st.record.size {
            if cancelled.load(Ordering::Relaxed) {
                return Err(StoreError::Engine(
                    "sending the snapshot was cancelled".into(),
                ));
            }
            let from = frontier.size();
            let to = st.record.size.min(from.saturating_add(STREAM_CHUNK));
            let txn = db.begin_read()?;
            let Some(entries) = read_entries(&txn, no)? else {
                break;
            };
            for item in entries.range(from..to)? {
                let (k, v) = item?;
                let index = k.value();
                if index != frontier.size() {
                    break 'chunks;
                }
                // Checked in clear, sent as stored: the stream (a file on this volume while it
                // is sent) holds sealed entries, which the receiving node opens with the same
                // cluster key.
                let plain = from_store(key, &st.tenant, index, v.value())?;
                frontier.append(leaf_hash(st.record.suite, &plain))?;
                w.record(
                    TAG_ENTRY,
                    &[&no.to_be_bytes(), &index.to_be_bytes(), v.value()],
                )?;
            }
            if frontier.size() != to {
                break;
            }
        }
        if frontier.size() != st.record.size || frontier.root().as_bytes() != st.root.as_slice() {
            return Err(StoreError::Corrupt(format!(
                "tenant {:?}: the stored entries do not rebuild the snapshot's tree \
                 ({} of {} entries, or another root); not sending it",
                st.tenant,
                frontier.size(),
                st.record.size
            )));
        }
    }
    w.finish()?;
    Ok(())
}

/// Takes a snapshot of the current state: writes its manifest and makes it the current
/// snapshot. Returns its metadata and the manifest.
pub(crate) fn build(shared: &SmShared) -> Result<(SnapshotMeta, Arc<[u8]>)> {
    // Under the lock, so that a build never reads a database an install has just replaced.
    let _guard = shared
        .snapshot_lock
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let db = shared.db();
    let (last_applied, _) = read_applied(&db)?;
    let id = format!(
        "{}-{}",
        last_applied.map_or_else(|| "none".to_string(), |l| l.to_string()),
        unique_suffix(shared)
    );
    let mut manifest = Vec::new();
    let (meta, ledger_entries) = write_manifest(&db, &mut manifest, id)?;
    // Applies mostly commit without fsync, and openraft purges the log up to this snapshot once
    // it is current, and a sent snapshot reads its entries from the state: make durable every
    // commit up to (and past) the one the manifest read before it becomes current. Applies
    // continue during a build, so this must come after the read, not before.
    shared.make_durable()?;
    save_current(shared, &manifest)?;
    shared.counts.snapshot_taken(ledger_entries);
    Ok((meta, manifest.into()))
}

/// Makes `manifest` the current snapshot (write, fsync, rename, fsync the directory).
fn save_current(shared: &SmShared, manifest: &[u8]) -> Result<()> {
    let dir = shared.snapshot_dir();
    let tmp = dir.join(format!("build-{}.tmp", unique_suffix(shared)));
    let mut file = File::create(&tmp)?;
    file.write_all(manifest)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, dir.join(CURRENT))?;
    fsync_dir(&dir)?;
    Ok(())
}

/// Whether an END record's body holds `records` and the digest `before` of what precedes it.
fn end_matches(body: &[u8], records: u64, before: &HashValue) -> bool {
    body.get(..8) == Some(records.to_be_bytes().as_slice())
        && body.get(8..) == Some(before.as_bytes())
}

/// A manifest's records before END (tag, body), after checking its framing, record count and
/// digest, and that nothing follows END.
fn manifest_records(manifest: &[u8]) -> Result<Vec<(u8, Vec<u8>)>> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("snapshot manifest: {what}"));
    let mut r = HashingReader::new(manifest);
    let mut magic = [0u8; 8];
    r.exact(&mut magic).map_err(|_| corrupt("truncated"))?;
    if &magic != MANIFEST_MAGIC {
        return Err(corrupt("bad magic or version"));
    }
    let mut records = Vec::new();
    loop {
        let (tag, body, before) = r.record().map_err(|_| corrupt("truncated"))?;
        if tag == TAG_END {
            if !end_matches(&body, records.len() as u64, &before) {
                return Err(corrupt("checksum mismatch"));
            }
            break;
        }
        records.push((tag, body));
    }
    if !r.inner.is_empty() {
        return Err(corrupt("bytes after END"));
    }
    if records.first().is_none_or(|(tag, _)| *tag != TAG_META) {
        return Err(corrupt("META record must come first"));
    }
    Ok(records)
}

/// The current snapshot's metadata and manifest, if there is one.
pub(crate) fn current(shared: &SmShared) -> Result<Option<(SnapshotMeta, Arc<[u8]>)>> {
    let _guard = shared
        .snapshot_lock
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let manifest = match std::fs::read(shared.snapshot_dir().join(CURRENT)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let records = manifest_records(&manifest)?;
    let header: SnapshotHeader = match records.first() {
        Some((_, body)) => decode(body)?,
        None => return Err(StoreError::Corrupt("snapshot manifest: no META".into())),
    };
    Ok(Some((header.meta, manifest.into())))
}

/// Ledger entries (all tenants) in the current snapshot, if there is one.
pub(crate) fn current_entries(shared: &SmShared) -> Result<Option<u64>> {
    let Some((_, manifest)) = current(shared)? else {
        return Ok(None);
    };
    let mut entries = 0u64;
    for (tag, body) in manifest_records(&manifest)? {
        if tag == TAG_TENANT {
            entries += decode::<SnapshotTenant>(&body)?.record.size;
        }
    }
    Ok(Some(entries))
}

/// Writes the stream of a snapshot (its `manifest`) to a temporary file for sending, and
/// returns the file positioned at its start. The file is unlinked at once: it is freed when
/// the last handle to it is dropped, also if the process dies.
pub(crate) fn stream_file(
    shared: &SmShared,
    manifest: &[u8],
    cancelled: &AtomicBool,
) -> Result<File> {
    let path = shared
        .snapshot_dir()
        .join(format!("send-{}.tmp", unique_suffix(shared)));
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    write_stream(
        &shared.db(),
        shared.at_rest.as_deref(),
        manifest,
        &mut file,
        cancelled,
    )?;
    use std::io::Seek as _;
    file.seek(std::io::SeekFrom::Start(0))?;
    Ok(file)
}

fn read_header(r: impl Read) -> Result<SnapshotHeader> {
    let mut r = HashingReader::new(r);
    let mut magic = [0u8; 8];
    r.exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(StoreError::BadSnapshot("bad magic or version".into()));
    }
    let (tag, body, _) = r.record()?;
    if tag != TAG_META {
        return Err(StoreError::BadSnapshot(
            "META record must come first".into(),
        ));
    }
    decode(&body).map_err(|e| StoreError::BadSnapshot(format!("META: {e}")))
}

struct Importing {
    tenant: String,
    entries_name: String,
    record: TenantRecord,
    root: HashValue,
    frontier: CompactRange,
}

fn finish_tenant(t: &Importing) -> Result<()> {
    if t.frontier.size() != t.record.size {
        return Err(StoreError::BadSnapshot(format!(
            "tenant {:?}: {} entries, record says {}",
            t.tenant,
            t.frontier.size(),
            t.record.size
        )));
    }
    if t.frontier.root() != t.root {
        return Err(StoreError::BadSnapshot(format!(
            "tenant {:?}: rebuilt root {} differs from the snapshot's {}",
            t.tenant,
            t.frontier.root(),
            t.root
        )));
    }
    Ok(())
}

fn bad(msg: impl Into<String>) -> StoreError {
    StoreError::BadSnapshot(msg.into())
}

fn begin(db: &Database, durability: Durability) -> Result<WriteTransaction> {
    let mut txn = db.begin_write()?;
    txn.set_durability(durability)?;
    Ok(txn)
}

/// Reads a snapshot stream into the (empty) database `db`, checking everything (module docs).
fn import(
    db: &Database,
    input: impl Read,
    generation_entries: u64,
    key: Option<&AtRestKey>,
) -> Result<SnapshotMeta> {
    let mut generations = Generations::empty(generation_entries);
    let mut r = HashingReader::new(BufReader::with_capacity(1 << 20, input));
    let mut magic = [0u8; 8];
    r.exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(bad("bad magic or version"));
    }
    let (tag, body, _) = r.record()?;
    if tag != TAG_META {
        return Err(bad("META record must come first"));
    }
    let header: SnapshotHeader = decode(&body).map_err(|e| bad(format!("META: {e}")))?;
    let mut records = 1u64;
    let mut seen_tenants = std::collections::HashSet::new();
    let mut current: Option<Importing> = None;
    let mut txn = begin(db, Durability::None)?;
    let mut in_txn = 0u64;
    loop {
        let (tag, body, before) = r.record()?;
        match tag {
            TAG_TENANT => {
                if let Some(t) = current.take() {
                    finish_tenant(&t)?;
                }
                let st: SnapshotTenant = decode(&body).map_err(|e| bad(format!("TENANT: {e}")))?;
                if st.record.no >= header.next_tenant_no || !seen_tenants.insert(st.record.no) {
                    return Err(bad(format!(
                        "tenant {:?} has a bad or repeated number {}",
                        st.tenant, st.record.no
                    )));
                }
                {
                    let mut tenants = txn.open_table(TENANTS)?;
                    if tenants.get(st.tenant.as_str())?.is_some() {
                        return Err(bad(format!("tenant {:?} appears twice", st.tenant)));
                    }
                    tenants.insert(st.tenant.as_str(), encode(&st.record)?.as_slice())?;
                }
                current = Some(Importing {
                    entries_name: entries_table_name(st.record.no),
                    root: HashValue::new(st.record.suite, st.root),
                    frontier: CompactRange::new(st.record.suite),
                    tenant: st.tenant,
                    record: st.record,
                });
            }
            TAG_ENTRY => {
                let t = current
                    .as_mut()
                    .ok_or_else(|| bad("ENTRY before any TENANT"))?;
                let (no, rest) = body
                    .split_first_chunk::<4>()
                    .ok_or_else(|| bad("short ENTRY"))?;
                let (index, bytes) = rest
                    .split_first_chunk::<8>()
                    .ok_or_else(|| bad("short ENTRY"))?;
                let no = u32::from_be_bytes(*no);
                let index = u64::from_be_bytes(*index);
                let expected = t.frontier.size();
                if no != t.record.no || index != expected {
                    return Err(bad(format!(
                        "tenant {:?}: expected entry {expected}, got tenant no {no} index {index}",
                        t.tenant
                    )));
                }
                let bytes = &from_store(key, &t.tenant, index, bytes)
                    .map_err(|e| bad(format!("tenant {:?} entry {index}: {e}", t.tenant)))?;
                let entry = Entry::decode(bytes)
                    .map_err(|e| bad(format!("tenant {:?} entry {index}: {e}", t.tenant)))?;
                if entry.tenant != t.tenant || entry.index != index {
                    return Err(bad(format!(
                        "tenant {:?} entry {index} claims tenant {:?} index {}",
                        t.tenant, entry.tenant, entry.index
                    )));
                }
                let leaf = leaf_hash(t.record.suite, bytes);
                let created = t.frontier.append(leaf)?;
                {
                    let mut entries = txn.open_table(entries_table(&t.entries_name))?;
                    let mut nodes = txn.open_table(NODES)?;
                    let mut indexes = IndexWriter::open(&txn, &generations)?;
                    entries.insert(index, to_store(key, &t.tenant, index, bytes)?.as_slice())?;
                    for (id, hash) in created.into_iter().filter(|(id, _)| stores_level(id.level)) {
                        nodes.insert((no, id.level, id.index), *hash.as_bytes())?;
                    }
                    let request = (!entry.request_id.is_empty()).then(|| {
                        let (submitter, request_id) = (&entry.submitter, &entry.request_id);
                        let hash = request_hash(no, submitter, request_id);
                        (submitter.as_str(), request_id.as_str(), hash)
                    });
                    indexes.insert(&mut generations, no, leaf.as_bytes(), request, index)?;
                    if let Ok(Some(change)) =
                        super::keys::parse_key_change(&entry.kind, &entry.payload)
                    {
                        let mut keys = txn.open_table(KEYS)?;
                        super::keys::apply(&mut keys, no, index, change)?;
                    }
                }
                in_txn += 1;
                if in_txn >= IMPORT_CHUNK {
                    txn.commit()?;
                    txn = begin(db, Durability::None)?;
                    in_txn = 0;
                }
            }
            TAG_COSIG => {
                let t = current
                    .as_ref()
                    .ok_or_else(|| bad("COSIG before any TENANT"))?;
                let c: SnapshotCosig = decode(&body).map_err(|e| bad(format!("COSIG: {e}")))?;
                if c.no != t.record.no || c.size == 0 || c.size > t.record.size {
                    return Err(bad(format!(
                        "tenant {:?}: cosignature for tenant no {} size {} out of place",
                        t.tenant, c.no, c.size
                    )));
                }
                let mut cosigs = txn.open_table(COSIGS)?;
                cosigs.insert(
                    (c.no, c.size, c.witness.as_str()),
                    encode(&c.record)?.as_slice(),
                )?;
            }
            TAG_END => {
                let (count, digest) = body
                    .split_first_chunk::<8>()
                    .ok_or_else(|| bad("short END"))?;
                if u64::from_be_bytes(*count) != records {
                    return Err(bad("record count mismatch"));
                }
                if digest != before.as_bytes() {
                    return Err(bad("checksum mismatch"));
                }
                break;
            }
            other => return Err(bad(format!("unknown record tag {other}"))),
        }
        records += 1;
    }
    let mut trailing = [0u8; 1];
    if r.inner.read(&mut trailing)? != 0 {
        return Err(bad("bytes after END"));
    }
    if let Some(t) = current.take() {
        finish_tenant(&t)?;
    }
    {
        let mut meta = txn.open_table(SM_META)?;
        meta.insert(
            KEY_LAST_APPLIED,
            encode(&header.meta.last_log_id)?.as_slice(),
        )?;
        meta.insert(
            KEY_MEMBERSHIP,
            encode(&header.meta.last_membership)?.as_slice(),
        )?;
        meta.insert(
            KEY_NEXT_TENANT_NO,
            encode(&header.next_tenant_no)?.as_slice(),
        )?;
        if key.is_some() {
            // Every entry imported was sealed on the way in.
            meta.insert(KEY_SEALED_AT_REST, encode(&1u32)?.as_slice())?;
        }
    }
    txn.set_durability(Durability::Immediate)?;
    txn.commit()?;
    Ok(header.meta)
}

/// Installs the snapshot stream in `file` (positioned at its start): import into a new
/// database, switch the state to it, then save its manifest as the current snapshot. The
/// stream's metadata must match `expected`. Returns the new tenant cache.
pub(crate) fn install(
    shared: &SmShared,
    expected: &SnapshotMeta,
    mut file: File,
) -> Result<TenantCache> {
    let new_path = shared.dir.join(NEW_STATE);
    if new_path.exists() {
        std::fs::remove_file(&new_path)?;
    }
    let new_db = open_state_db(&new_path, shared.cache_bytes)?;
    let imported = import(
        &new_db,
        &mut file,
        shared.generation_entries,
        shared.at_rest.as_deref(),
    )
    .and_then(|meta| {
        if expected.last_log_id != meta.last_log_id
            || expected.last_membership != meta.last_membership
        {
            Err(bad(format!("stream holds {meta}, expected {expected}")))
        } else {
            Ok(meta)
        }
    });
    drop(new_db);
    drop(file);
    let meta = match imported {
        Ok(meta) => meta,
        Err(e) => {
            let _ = std::fs::remove_file(&new_path);
            return Err(e);
        }
    };

    let _guard = shared
        .snapshot_lock
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let state_path = shared.state_path();
    std::fs::rename(&new_path, &state_path)?;
    fsync_dir(&shared.dir)?;
    let db = open_state_db(&state_path, shared.cache_bytes)?;
    let tenants = load_tenants(&db)?;
    // The state now holds the snapshot (durably), so its manifest may become current; a crash
    // before this leaves the state ahead of the old manifest, which is harmless.
    let mut manifest = Vec::new();
    write_manifest(&db, &mut manifest, meta.snapshot_id)?;
    shared.replace_db(db);
    save_current(shared, &manifest)?;
    shared.counts.reset(total_entries(&tenants));
    Ok(tenants)
}

/// At open: converts a current snapshot written by an earlier version (the whole stream) to
/// a manifest, and removes that version's entry-count file.
pub(crate) fn upgrade_legacy(shared: &SmShared) -> Result<()> {
    let dir = shared.snapshot_dir();
    let _ = std::fs::remove_file(dir.join("current.entries"));
    let file = match File::open(dir.join(CURRENT)) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let mut r = HashingReader::new(BufReader::with_capacity(1 << 20, file));
    let mut magic = [0u8; 8];
    r.exact(&mut magic)?;
    if &magic != MAGIC {
        return Ok(());
    }
    // That version saved a received stream as current before switching the state to it; a
    // crash in between left the state behind, and the stream is the only copy: install it.
    let header = read_header(File::open(dir.join(CURRENT))?)?;
    let (applied, _) = read_applied(&shared.db())?;
    if header.meta.last_log_id > applied {
        tracing::warn!(
            snapshot = %header.meta,
            "state is behind the current snapshot; finishing its install"
        );
        install(shared, &header.meta, File::open(dir.join(CURRENT))?)?;
        return Ok(());
    }
    let mut manifest = Vec::new();
    let mut w = HashingWriter::new(&mut manifest);
    w.write(MANIFEST_MAGIC)?;
    let mut records = 0u64;
    loop {
        let (tag, body, before) = r.record()?;
        if tag == TAG_END {
            if !end_matches(&body, records, &before) {
                return Err(bad("checksum mismatch in the current snapshot"));
            }
            break;
        }
        records += 1;
        if tag != TAG_ENTRY {
            w.record(tag, &[&body])?;
        }
    }
    w.finish()?;
    save_current(shared, &manifest)?;
    tracing::info!("converted the current snapshot to a manifest");
    Ok(())
}

/// At open: the state must hold at least what the current snapshot describes (module docs).
pub(crate) fn check_state_covers_snapshot(shared: &SmShared) -> Result<()> {
    let Some((meta, _)) = current(shared)? else {
        return Ok(());
    };
    let (applied, _) = read_applied(&shared.db())?;
    if meta.last_log_id > applied {
        return Err(StoreError::Corrupt(format!(
            "{} is behind the current snapshot ({meta}; applied: {}): the state file was lost \
             or replaced by an older copy. Replace this node from its peers (docs/OPERATIONS.md, \
             \"Replace a ledger node\")",
            shared.state_path().display(),
            applied.map_or_else(|| "nothing".to_string(), |l| l.to_string())
        )));
    }
    Ok(())
}
