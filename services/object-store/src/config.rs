//! Object-store settings (defaults → file → `CARETRAIL_*` environment).

use std::path::PathBuf;

use caretrail_platform::auth::AuthSettings;
use caretrail_platform::config::{ConfigError, Validate};
use caretrail_runtime::ServiceSettings;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    #[serde(flatten)]
    pub service: ServiceSettings,
    #[serde(flatten)]
    pub auth: AuthSettings,
    #[serde(flatten)]
    pub store: StoreSettings,
}

/// Where ciphertexts go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum StorageKind {
    /// A local directory (the embedded default; one replica only).
    #[default]
    Local,
    /// Any S3 API (AWS S3, MinIO, Garage, Ceph).
    S3,
}

/// Who decides whether a read is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DecisionSource {
    /// The consent service's decision RPC (`consent.decide`).
    #[default]
    Consent,
    /// Only the institution that created a record may read it (deployments without the
    /// consent service).
    OwnerOnly,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StoreSettings {
    #[serde(default)]
    pub storage: StorageKind,
    /// Directory of the `local` storage.
    #[serde(default = "default_objects_dir")]
    pub objects_dir: PathBuf,
    /// S3 endpoint URL (unset: AWS's regional endpoint).
    #[serde(default)]
    pub s3_endpoint: Option<String>,
    #[serde(default = "default_region")]
    pub s3_region: String,
    #[serde(default)]
    pub s3_bucket: String,
    #[serde(default)]
    pub s3_access_key_id: Option<SecretString>,
    #[serde(default)]
    pub s3_secret_access_key: Option<SecretString>,
    /// Path-style addressing (`endpoint/bucket/key`), needed by most self-hosted servers.
    #[serde(default = "default_true")]
    pub s3_force_path_style: bool,
    /// Multipart part size (5 MiB is S3's minimum). Memory per upload is about one part.
    #[serde(default = "default_part_size")]
    pub s3_part_size_bytes: usize,
    /// Largest accepted record; larger uploads are refused with 413.
    #[serde(default = "default_max_record")]
    pub max_record_bytes: u64,
    /// JSON keyring file of root keys that seal the tenants' key-encryption keys, e.g. a
    /// mounted Kubernetes Secret: `{"primary": "k1", "keys": {"k1": "<64 hex>"}}`.
    #[serde(default)]
    pub keyring_file: Option<PathBuf>,
    /// The same keyring inline (environment `CARETRAIL_KEYRING`); the file wins if both are set.
    #[serde(default)]
    pub keyring: Option<SecretString>,
    #[serde(default)]
    pub decisions: DecisionSource,
    /// How long an upload waits for its ledger receipt before answering 202 (the record is
    /// then anchored in the background).
    #[serde(default = "default_anchor_wait")]
    pub anchor_wait_ms: u64,
    /// Timeout of one RPC to identity, consent or the ledger.
    #[serde(default = "default_rpc_timeout")]
    pub rpc_timeout_ms: u64,
}

fn default_objects_dir() -> PathBuf {
    PathBuf::from("./data/objects")
}
fn default_region() -> String {
    "us-east-1".into()
}
fn default_true() -> bool {
    true
}
fn default_part_size() -> usize {
    8 * 1024 * 1024
}
fn default_max_record() -> u64 {
    4 * 1024 * 1024 * 1024
}
fn default_anchor_wait() -> u64 {
    10_000
}
fn default_rpc_timeout() -> u64 {
    10_000
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            storage: StorageKind::Local,
            objects_dir: default_objects_dir(),
            s3_endpoint: None,
            s3_region: default_region(),
            s3_bucket: String::new(),
            s3_access_key_id: None,
            s3_secret_access_key: None,
            s3_force_path_style: true,
            s3_part_size_bytes: default_part_size(),
            max_record_bytes: default_max_record(),
            keyring_file: None,
            keyring: None,
            decisions: DecisionSource::Consent,
            anchor_wait_ms: default_anchor_wait(),
            rpc_timeout_ms: default_rpc_timeout(),
        }
    }
}

impl Validate for StoreSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if self.storage == StorageKind::S3 {
            if self.s3_bucket.is_empty() {
                return invalid("s3_bucket is required with storage = s3");
            }
            if self
                .s3_access_key_id
                .as_ref()
                .map(|s| s.expose_secret().is_empty())
                != Some(false)
                || self
                    .s3_secret_access_key
                    .as_ref()
                    .map(|s| s.expose_secret().is_empty())
                    != Some(false)
            {
                return invalid(
                    "s3_access_key_id and s3_secret_access_key are required with storage = s3",
                );
            }
            if !(5 * 1024 * 1024..=512 * 1024 * 1024).contains(&self.s3_part_size_bytes) {
                return invalid("s3_part_size_bytes must be 5 MiB ..= 512 MiB");
            }
        }
        if self.max_record_bytes == 0 {
            return invalid("max_record_bytes must be > 0");
        }
        if self.keyring_file.is_none() && self.keyring.is_none() {
            return invalid(
                "a keyring is required: keyring_file (a mounted secret) or CARETRAIL_KEYRING",
            );
        }
        if self.rpc_timeout_ms == 0 {
            return invalid("rpc_timeout_ms must be > 0");
        }
        Ok(())
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        self.service.validate()?;
        self.store.validate()
    }
}

impl Config {
    /// Defaults → `CARETRAIL_CONFIG` file → `CARETRAIL_*` environment.
    pub fn load() -> Result<Self, ConfigError> {
        caretrail_platform::config::load(None)
    }

    /// Defaults around the given settings (tests, the all-in-one binary).
    pub fn new(service: ServiceSettings, store: StoreSettings) -> Self {
        Self {
            service,
            auth: AuthSettings::default(),
            store,
        }
    }
}
