//! Consent settings (defaults → file → `CARETRAIL_*` environment).

use caretrail_platform::auth::AuthSettings;
use caretrail_platform::config::{ConfigError, Validate};
use caretrail_runtime::ServiceSettings;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    #[serde(flatten)]
    pub service: ServiceSettings,
    #[serde(flatten)]
    pub auth: AuthSettings,
    #[serde(flatten)]
    pub consent: ConsentSettings,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ConsentSettings {
    /// How long a grant, revocation or policy change waits for its ledger receipt before
    /// the reply goes out without it (anchoring then continues in the background).
    #[serde(default = "default_anchor_wait")]
    pub anchor_wait_ms: u64,
    /// Timeout of calls to identity, the object store and the ledger.
    #[serde(default = "default_rpc_timeout")]
    pub rpc_timeout_ms: u64,
}

fn default_anchor_wait() -> u64 {
    10_000
}
fn default_rpc_timeout() -> u64 {
    10_000
}

impl Default for ConsentSettings {
    fn default() -> Self {
        Self {
            anchor_wait_ms: default_anchor_wait(),
            rpc_timeout_ms: default_rpc_timeout(),
        }
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        self.service.validate()?;
        if self.consent.rpc_timeout_ms == 0 {
            return Err(ConfigError::Invalid("rpc_timeout_ms must be > 0".into()));
        }
        Ok(())
    }
}

impl Config {
    /// Defaults → `CARETRAIL_CONFIG` file → `CARETRAIL_*` environment.
    pub fn load() -> Result<Self, ConfigError> {
        caretrail_platform::config::load(None)
    }

    /// Defaults around the given settings (tests, the all-in-one binary).
    pub fn new(service: ServiceSettings, consent: ConsentSettings) -> Self {
        Self {
            service,
            auth: AuthSettings::default(),
            consent,
        }
    }
}
