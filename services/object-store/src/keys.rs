//! Key-encryption keys (KEKs): one per tenant and version, wrapping the records' data keys.
//!
//! KEKs are stored in the database sealed by a root key from a [`Kms`]. The built-in
//! [`Keyring`] holds root keys from a JSON file (a mounted Kubernetes Secret) or the
//! environment; a cloud KMS can implement the same trait. Root keys can themselves rotate:
//! the keyring names its primary key and keeps the older ones for opening.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use caretrail_crypto::{DataKey, Kek, MacKey, Suite};
use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection,
    EntityTrait, QueryFilter, QueryOrder,
};
use secrecy::SecretString;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::entities::kek_version;
use crate::error::ObjectStoreError;

#[derive(Debug, thiserror::Error)]
pub enum KmsError {
    #[error("keyring: {0}")]
    Keyring(String),
    #[error("unknown root key {0:?}")]
    UnknownRoot(String),
    #[error("a sealed key does not open (wrong root key or altered)")]
    Open,
    #[error(transparent)]
    Crypto(#[from] caretrail_crypto::CryptoError),
}

/// Seals and opens KEKs. `context` binds a sealed KEK to its tenant and version.
#[async_trait]
pub trait Kms: Send + Sync {
    /// Seals with the primary root key; returns its id and the sealed bytes.
    async fn seal(
        &self,
        suite: Suite,
        context: &str,
        kek: &[u8],
    ) -> Result<(String, Vec<u8>), KmsError>;
    async fn open(
        &self,
        suite: Suite,
        context: &str,
        root_id: &str,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KmsError>;
}

#[derive(Deserialize)]
struct KeyringFile {
    primary: String,
    keys: HashMap<String, String>,
}

/// Root keys (32 random bytes each, hex) from a JSON document.
pub struct Keyring {
    primary: String,
    roots: HashMap<String, Zeroizing<Vec<u8>>>,
}

impl Keyring {
    pub fn from_json(text: &str) -> Result<Self, KmsError> {
        let file: KeyringFile =
            serde_json::from_str(text).map_err(|e| KmsError::Keyring(e.to_string()))?;
        let mut roots = HashMap::new();
        for (id, hex_key) in file.keys {
            let bytes = Zeroizing::new(
                hex::decode(hex_key.trim())
                    .map_err(|_| KmsError::Keyring(format!("key {id:?} is not hex")))?,
            );
            if bytes.len() != 32 {
                return Err(KmsError::Keyring(format!(
                    "key {id:?} must be 32 bytes (64 hex)"
                )));
            }
            roots.insert(id, bytes);
        }
        if !roots.contains_key(&file.primary) {
            return Err(KmsError::Keyring(format!(
                "primary key {:?} is not in keys",
                file.primary
            )));
        }
        Ok(Self {
            primary: file.primary,
            roots,
        })
    }

    pub fn from_file(path: &Path) -> Result<Self, KmsError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| KmsError::Keyring(format!("{}: {e}", path.display())))?;
        Self::from_json(&text)
    }

    /// A new keyring document with one fresh root key (the all-in-one's first start).
    pub fn generate_json() -> Result<SecretString, KmsError> {
        let key = DataKey::generate(Suite::Intl)?;
        Ok(SecretString::from(format!(
            "{{\"primary\": \"k1\", \"keys\": {{\"k1\": \"{}\"}}}}",
            hex::encode(key.expose_secret())
        )))
    }

    /// The sealing key for `suite`, derived from a root key so that gm tenants' KEKs are
    /// sealed with SM4 and intl tenants' with AES-256.
    fn sealing_key(&self, suite: Suite, root_id: &str) -> Result<DataKey, KmsError> {
        let root = self
            .roots
            .get(root_id)
            .ok_or_else(|| KmsError::UnknownRoot(root_id.to_string()))?;
        let mac = MacKey::from_bytes(suite, root)?;
        let derived = mac.mac(b"caretrail/kek-seal/v1");
        Ok(DataKey::from_bytes(
            suite,
            &derived.as_bytes()[..suite.aead_key_len()],
        )?)
    }
}

fn aad(context: &str, root_id: &str) -> Vec<u8> {
    format!("caretrail/kek/v1\n{context}\n{root_id}").into_bytes()
}

#[async_trait]
impl Kms for Keyring {
    async fn seal(
        &self,
        suite: Suite,
        context: &str,
        kek: &[u8],
    ) -> Result<(String, Vec<u8>), KmsError> {
        let key = self.sealing_key(suite, &self.primary)?;
        let sealed = caretrail_crypto::seal(&key, &aad(context, &self.primary), kek)?;
        Ok((self.primary.clone(), sealed))
    }

    async fn open(
        &self,
        suite: Suite,
        context: &str,
        root_id: &str,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let key = self.sealing_key(suite, root_id)?;
        caretrail_crypto::open(&key, &aad(context, root_id), sealed)
            .map(Zeroizing::new)
            .map_err(|_| KmsError::Open)
    }
}

fn context(tenant: &str, version: i32) -> String {
    format!("{tenant}\n{version}")
}

/// The tenants' KEK versions, opened on demand and cached.
pub struct KekStore {
    db: DatabaseConnection,
    kms: Arc<dyn Kms>,
    cache: Mutex<HashMap<(String, i32), Arc<Kek>>>,
}

impl KekStore {
    pub fn new(db: DatabaseConnection, kms: Arc<dyn Kms>) -> Self {
        Self {
            db,
            kms,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self, tenant: &str, version: i32) -> Option<Arc<Kek>> {
        self.cache
            .lock()
            .ok()
            .and_then(|c| c.get(&(tenant.to_string(), version)).cloned())
    }

    async fn open_row(
        &self,
        suite: Suite,
        row: &kek_version::Model,
    ) -> Result<Arc<Kek>, ObjectStoreError> {
        if let Some(k) = self.cached(&row.tenant_id, row.version) {
            return Ok(k);
        }
        let sealed = B64
            .decode(&row.sealed)
            .map_err(|_| ObjectStoreError::Corrupt("sealed KEK"))?;
        let bytes = self
            .kms
            .open(
                suite,
                &context(&row.tenant_id, row.version),
                &row.root_key_id,
                &sealed,
            )
            .await?;
        let kek = Arc::new(Kek::from_bytes(suite, &bytes)?);
        if let Ok(mut c) = self.cache.lock() {
            c.insert((row.tenant_id.clone(), row.version), kek.clone());
        }
        Ok(kek)
    }

    async fn newest(
        &self,
        db: &impl ConnectionTrait,
        tenant: &str,
    ) -> Result<Option<kek_version::Model>, ObjectStoreError> {
        Ok(kek_version::Entity::find()
            .filter(kek_version::Column::TenantId.eq(tenant))
            .order_by_desc(kek_version::Column::Version)
            .one(db)
            .await?)
    }

    async fn insert_version(
        &self,
        suite: Suite,
        tenant: &str,
        version: i32,
    ) -> Result<(), ObjectStoreError> {
        let kek = Kek::generate(suite)?;
        let (root, sealed) = self
            .kms
            .seal(suite, &context(tenant, version), kek.expose_secret())
            .await?;
        let txn = caretrail_db::begin_tenant(&self.db, tenant).await?;
        let inserted = kek_version::ActiveModel {
            tenant_id: Set(tenant.to_string()),
            version: Set(version),
            suite: Set(suite.as_str().to_string()),
            root_key_id: Set(root),
            sealed: Set(B64.encode(sealed)),
            created_at: Set(Utc::now()),
        }
        .insert(&txn)
        .await;
        match inserted {
            Ok(_) => Ok(txn.commit().await?),
            // Another replica created this version first: use theirs.
            Err(e) if crate::error::is_unique_violation(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The tenant's current KEK (created on first use).
    pub async fn current(
        &self,
        tenant: &str,
        suite: Suite,
    ) -> Result<(i32, Arc<Kek>), ObjectStoreError> {
        let txn = caretrail_db::begin_tenant(&self.db, tenant).await?;
        let newest = self.newest(&txn, tenant).await?;
        txn.commit().await?;
        let row = match newest {
            Some(row) => row,
            None => {
                self.insert_version(suite, tenant, 1).await?;
                let txn = caretrail_db::begin_tenant(&self.db, tenant).await?;
                let row = self
                    .newest(&txn, tenant)
                    .await?
                    .ok_or(ObjectStoreError::Corrupt("KEK missing after creation"))?;
                txn.commit().await?;
                row
            }
        };
        Ok((row.version, self.open_row(suite, &row).await?))
    }

    /// A given version (to unwrap keys made under it).
    pub async fn version(
        &self,
        tenant: &str,
        suite: Suite,
        version: i32,
    ) -> Result<Arc<Kek>, ObjectStoreError> {
        if let Some(k) = self.cached(tenant, version) {
            return Ok(k);
        }
        let txn = caretrail_db::begin_tenant(&self.db, tenant).await?;
        let row = kek_version::Entity::find_by_id((tenant.to_string(), version))
            .one(&txn)
            .await?
            .ok_or(ObjectStoreError::Corrupt("unknown KEK version"))?;
        txn.commit().await?;
        self.open_row(suite, &row).await
    }

    /// Creates the next version; new records use it from now on.
    pub async fn rotate(&self, tenant: &str, suite: Suite) -> Result<i32, ObjectStoreError> {
        let (current, _) = self.current(tenant, suite).await?;
        self.insert_version(suite, tenant, current + 1).await?;
        Ok(self.current(tenant, suite).await?.0)
    }

    /// Every version of the tenant, oldest first.
    pub async fn versions(
        &self,
        tenant: &str,
    ) -> Result<Vec<kek_version::Model>, ObjectStoreError> {
        let txn = caretrail_db::begin_tenant(&self.db, tenant).await?;
        let rows = kek_version::Entity::find()
            .filter(kek_version::Column::TenantId.eq(tenant))
            .order_by_asc(kek_version::Column::Version)
            .all(&txn)
            .await?;
        txn.commit().await?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn ring(primary: &str, keys: &[(&str, &str)]) -> Keyring {
        let keys: Vec<String> = keys
            .iter()
            .map(|(id, k)| format!("\"{id}\": \"{k}\""))
            .collect();
        Keyring::from_json(&format!(
            "{{\"primary\": \"{primary}\", \"keys\": {{{}}}}}",
            keys.join(",")
        ))
        .unwrap()
    }

    #[tokio::test]
    async fn seals_and_opens_per_suite_and_context() {
        let k1 = "11".repeat(32);
        let k2 = "22".repeat(32);
        let old = ring("k1", &[("k1", &k1)]);
        let rotated = ring("k2", &[("k1", &k1), ("k2", &k2)]);
        for suite in [Suite::Intl, Suite::Gm] {
            let (root, sealed) = old
                .seal(suite, "ten_a\n1", b"0123456789abcdef")
                .await
                .unwrap();
            assert_eq!(root, "k1");
            // A rotated keyring still opens what the old primary sealed.
            let opened = rotated
                .open(suite, "ten_a\n1", &root, &sealed)
                .await
                .unwrap();
            assert_eq!(&opened[..], b"0123456789abcdef");
            // Bound to its tenant/version and its suite.
            assert!(
                rotated
                    .open(suite, "ten_b\n1", &root, &sealed)
                    .await
                    .is_err()
            );
            assert!(
                rotated
                    .open(suite, "ten_a\n2", &root, &sealed)
                    .await
                    .is_err()
            );
            let other = if suite == Suite::Intl {
                Suite::Gm
            } else {
                Suite::Intl
            };
            assert!(
                rotated
                    .open(other, "ten_a\n1", &root, &sealed)
                    .await
                    .is_err()
            );
            assert!(matches!(
                rotated.open(suite, "ten_a\n1", "k9", &sealed).await,
                Err(KmsError::UnknownRoot(_))
            ));
            let (root2, _) = rotated.seal(suite, "ten_a\n1", b"x").await.unwrap();
            assert_eq!(root2, "k2");
        }
    }

    #[test]
    fn rejects_bad_keyrings() {
        for bad in [
            "not json",
            r#"{"primary": "k2", "keys": {"k1": "1111111111111111111111111111111111111111111111111111111111111111"}}"#,
            r#"{"primary": "k1", "keys": {"k1": "abcd"}}"#,
            r#"{"primary": "k1", "keys": {"k1": "zz11111111111111111111111111111111111111111111111111111111111111"}}"#,
        ] {
            assert!(Keyring::from_json(bad).is_err(), "{bad}");
        }
        let generated = Keyring::generate_json().unwrap();
        assert!(Keyring::from_json(secrecy::ExposeSecret::expose_secret(&generated)).is_ok());
    }
}
