//! Entries sealed at rest (state format 6).
//!
//! Since payload version 2 an entry holds ids, hashes, times and a commitment — nothing of a
//! patient's care (docs/ARCHITECTURE.md, "What an entry carries"). Entries written before
//! hold categories, dates and purposes in clear, and they cannot be rewritten: their bytes
//! are the Merkle leaf and carry the submitter's signature. So a node stores every entry
//! encrypted, and converts a store written by format 5 when it opens it: a stolen ledger
//! volume shows leaf hashes and tree nodes, never an entry.
//!
//! Stored form: `"CTLX" ‖ 0x01 ‖ nonce ‖ AES-256-GCM(entry)` with associated data
//! `tenant ‖ 0x00 ‖ u64be index`, so a sealed entry opens only at its own place. The key is
//! derived (HMAC-SHA-256, domain-separated) from the cluster's Ed25519 checkpoint key — the
//! file every node already holds and that a restore needs anyway (a Kubernetes Secret, not
//! on the volume). Entries in clear (`"CTLE"…`) are still read, so a store is readable while
//! it converts, and by tools that hold no key only as far as it is in clear.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};

use caretrail_crypto::{Aead, DataKey, MacKey, NONCE_LEN, Suite, TAG_LEN};
use redb::{Database, ReadableDatabase, ReadableTable};

use super::StoreError;
use super::schema::{
    KEY_SEALED_AT_REST, SM_META, encode, entries_table, entries_table_name, read_entries,
    read_tenants,
};

/// Marks a sealed stored entry (an entry's own encoding starts with `CTLE`).
const MAGIC: &[u8] = b"CTLX\x01";
/// Domain separation of the derived key.
const CONTEXT: &[u8] = b"caretrail/ledger/entries-at-rest/v1";

/// The key entries are sealed with, its key schedule computed once.
///
/// Nonces are a random 96-bit base drawn when the key is derived (each start) plus a counter:
/// unique under the key without a system call per entry, as an append applies thousands a
/// second (a fresh random nonce each cost about a microsecond more per entry).
pub struct AtRestKey {
    aead: Aead,
    base: [u8; NONCE_LEN],
    counter: AtomicU64,
}

impl std::fmt::Debug for AtRestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AtRestKey(..)")
    }
}

impl AtRestKey {
    /// Derives the key from secret key material (the checkpoint key's PKCS#8 encoding).
    pub fn derive(secret: &[u8]) -> Result<Self, StoreError> {
        let bad =
            |e: caretrail_crypto::CryptoError| StoreError::Corrupt(format!("at-rest key: {e}"));
        let mac = MacKey::from_bytes(Suite::Intl, secret).map_err(bad)?;
        let key = DataKey::from_bytes(Suite::Intl, mac.mac(CONTEXT).as_bytes()).map_err(bad)?;
        Ok(Self {
            aead: Aead::new(&key),
            base: caretrail_crypto::random::<NONCE_LEN>().map_err(bad)?,
            counter: AtomicU64::new(0),
        })
    }

    fn next_nonce(&self) -> [u8; NONCE_LEN] {
        let n = self.counter.fetch_add(1, Ordering::Relaxed).to_be_bytes();
        let mut nonce = self.base;
        for (b, c) in nonce[NONCE_LEN - 8..].iter_mut().zip(n) {
            *b ^= c;
        }
        nonce
    }

    fn aad(tenant: &str, index: u64) -> Vec<u8> {
        let mut aad = Vec::with_capacity(tenant.len() + 9);
        aad.extend_from_slice(tenant.as_bytes());
        aad.push(0);
        aad.extend_from_slice(&index.to_be_bytes());
        aad
    }

    /// The stored form of entry `index` of `tenant`.
    pub fn seal(&self, tenant: &str, index: u64, entry: &[u8]) -> Result<Vec<u8>, StoreError> {
        let nonce = self.next_nonce();
        let mut out = Vec::with_capacity(MAGIC.len() + NONCE_LEN + entry.len() + TAG_LEN);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(entry);
        let start = MAGIC.len() + NONCE_LEN;
        let tag = self
            .aead
            .encrypt_in_place_detached(&nonce, &Self::aad(tenant, index), &mut out[start..])
            .map_err(|e| StoreError::Corrupt(format!("sealing entry {index}: {e}")))?;
        out.extend_from_slice(&tag);
        Ok(out)
    }

    fn open(&self, tenant: &str, index: u64, sealed: &[u8]) -> Option<Vec<u8>> {
        let (nonce, rest) = sealed.split_first_chunk::<NONCE_LEN>()?;
        self.aead
            .decrypt(nonce, &Self::aad(tenant, index), rest)
            .ok()
    }
}

/// Whether a stored value is sealed.
pub fn is_sealed(stored: &[u8]) -> bool {
    stored.starts_with(MAGIC)
}

/// The form of an entry to store: sealed when the node has a key.
pub fn to_store(
    key: Option<&AtRestKey>,
    tenant: &str,
    index: u64,
    entry: &[u8],
) -> Result<Vec<u8>, StoreError> {
    match key {
        Some(key) => key.seal(tenant, index, entry),
        None => Ok(entry.to_vec()),
    }
}

/// An entry's encoding from its stored form (borrowed as it is when stored in clear).
pub fn from_store<'a>(
    key: Option<&AtRestKey>,
    tenant: &str,
    index: u64,
    stored: &'a [u8],
) -> Result<Cow<'a, [u8]>, StoreError> {
    let Some(sealed) = stored.strip_prefix(MAGIC) else {
        return Ok(Cow::Borrowed(stored));
    };
    let key = key.ok_or_else(|| {
        StoreError::Corrupt(format!(
            "tenant {tenant:?}: entry {index} is sealed at rest and this store was opened without the checkpoint key"
        ))
    })?;
    key.open(tenant, index, sealed).map(Cow::Owned).ok_or_else(|| {
        StoreError::Corrupt(format!(
            "tenant {tenant:?}: entry {index} does not open with this node's key (another cluster's checkpoint key, or damaged)"
        ))
    })
}

/// Entries re-sealed per write transaction when a store is converted.
const SEAL_CHUNK: usize = 20_000;

/// At open with a key: seals every entry still in clear (a store written by format 5, or
/// opened without a key since), in chunks, then records that all are sealed and compacts the
/// file, so the pages that held the entries in clear are no longer in it. Resumable: a
/// conversion cut short seals what is left at the next open.
pub(crate) fn seal_stored_entries(db: &mut Database, key: &AtRestKey) -> Result<(), StoreError> {
    let done = {
        let txn = db.begin_read()?;
        let meta = txn.open_table(SM_META)?;
        meta.get(KEY_SEALED_AT_REST)?.is_some()
    };
    if done {
        return Ok(());
    }
    let started = std::time::Instant::now();
    let tenants: Vec<(String, u32)> = read_tenants(&db.begin_read()?)?
        .into_iter()
        .map(|(tenant, record)| (tenant, record.no))
        .collect();
    let mut sealed = 0u64;
    for (tenant, no) in &tenants {
        // A tenant registered but never appended to has no entries table (opening one for
        // writing would create it).
        if read_entries(&db.begin_read()?, *no)?.is_none() {
            continue;
        }
        let name = entries_table_name(*no);
        let mut from = 0u64;
        loop {
            let txn = db.begin_write()?;
            let mut last = None;
            {
                let mut table = txn.open_table(entries_table(&name))?;
                let clear: Vec<(u64, Vec<u8>)> = table
                    .range(from..)?
                    .take(SEAL_CHUNK)
                    .map(|item| item.map(|(k, v)| (k.value(), v.value().to_vec())))
                    .collect::<Result<_, _>>()?;
                for (index, stored) in clear {
                    last = Some(index);
                    if !is_sealed(&stored) {
                        table.insert(index, key.seal(tenant, index, &stored)?.as_slice())?;
                        sealed += 1;
                    }
                }
            }
            txn.commit()?;
            match last {
                Some(index) => from = index + 1,
                None => break,
            }
        }
    }
    let txn = db.begin_write()?;
    {
        let mut meta = txn.open_table(SM_META)?;
        meta.insert(KEY_SEALED_AT_REST, encode(&1u32)?.as_slice())?;
    }
    txn.commit()?;
    if sealed > 0 {
        if let Err(error) = db.compact() {
            tracing::warn!(%error, "compacting state.redb after sealing its entries failed; pages that held entries in clear may stay in the file until reused");
        }
        tracing::info!(
            entries = sealed,
            tenants = tenants.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "entries sealed at rest (state format 6)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sealed_entries_open_only_at_their_place_with_their_key() {
        let key = AtRestKey::derive(b"checkpoint key material").unwrap();
        let entry = b"CTLE\x01 an entry with category mental_health";
        let stored = to_store(Some(&key), "ten_a", 7, entry).unwrap();
        assert!(is_sealed(&stored));
        assert!(!stored.windows(13).any(|w| w == b"mental_health"));
        assert_eq!(
            &*from_store(Some(&key), "ten_a", 7, &stored).unwrap(),
            entry
        );
        // Another place, another tenant, another key, no key: refused.
        assert!(from_store(Some(&key), "ten_a", 8, &stored).is_err());
        assert!(from_store(Some(&key), "ten_b", 7, &stored).is_err());
        let other = AtRestKey::derive(b"another cluster").unwrap();
        assert!(from_store(Some(&other), "ten_a", 7, &stored).is_err());
        assert!(from_store(None, "ten_a", 7, &stored).is_err());
        // A flipped bit is caught.
        let mut damaged = stored.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        assert!(from_store(Some(&key), "ten_a", 7, &damaged).is_err());
        // Entries in clear are read as they are, with or without a key.
        assert_eq!(&*from_store(Some(&key), "ten_a", 7, entry).unwrap(), entry);
        assert_eq!(to_store(None, "ten_a", 7, entry).unwrap(), entry);
        // The same entry sealed twice differs (nonces never repeat).
        assert_ne!(stored, to_store(Some(&key), "ten_a", 7, entry).unwrap());
    }
}
