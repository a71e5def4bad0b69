//! Layered configuration: built-in defaults (serde defaults on each field) → an optional
//! TOML file (`CARETRAIL_CONFIG` or an explicit path) → `CARETRAIL_*` environment variables.
//!
//! Keys are flat so that the same names work as env vars and in Helm values:
//! `http_port` ⇔ `CARETRAIL_HTTP_PORT`. Nested tables use `__` (`CARETRAIL_A__B`).

use std::path::{Path, PathBuf};

use figment::{
    Figment,
    providers::{Env, Format, Toml},
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

pub const ENV_PREFIX: &str = "CARETRAIL_";
pub const CONFIG_FILE_ENV: &str = "CARETRAIL_CONFIG";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl From<figment::Error> for ConfigError {
    fn from(e: figment::Error) -> Self {
        // figment's message names the key and the source (file or env var) at fault.
        ConfigError::Invalid(e.to_string())
    }
}

/// Checks that run once at start-up, after all layers are merged.
pub trait Validate {
    fn validate(&self) -> Result<(), ConfigError>;
}

/// Loads `T` from defaults, the optional file and the environment, then validates it.
pub fn load<T: DeserializeOwned + Validate>(file: Option<&Path>) -> Result<T, ConfigError> {
    let env_file = std::env::var_os(CONFIG_FILE_ENV).map(PathBuf::from);
    let file = file.map(Path::to_path_buf).or(env_file);
    let mut figment = Figment::new();
    if let Some(path) = file {
        if !path.exists() {
            return Err(ConfigError::MissingFile(path));
        }
        figment = figment.merge(Toml::file(path));
    }
    figment = figment.merge(Env::prefixed(ENV_PREFIX).split("__"));
    let config: T = figment.extract()?;
    config.validate()?;
    Ok(config)
}

/// Loads from an explicit figment (tests and the all-in-one binary build configs in code).
pub fn from_figment<T: DeserializeOwned + Validate>(figment: Figment) -> Result<T, ConfigError> {
    let config: T = figment.extract()?;
    config.validate()?;
    Ok(config)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

/// Settings of the HTTP listener every service has.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HttpSettings {
    #[serde(default = "default_host")]
    pub http_host: String,
    #[serde(default = "default_port")]
    pub http_port: u16,
    /// Worker threads of the HTTP server; 0 means one per core.
    #[serde(default)]
    pub http_workers: usize,
    /// Seconds in-flight requests get to finish after SIGTERM.
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout_secs: u64,
    /// Largest JSON body accepted, in bytes.
    #[serde(default = "default_json_limit")]
    pub json_limit_bytes: usize,
}

fn default_host() -> String {
    "0.0.0.0".into()
}
fn default_port() -> u16 {
    8080
}
fn default_shutdown_timeout() -> u64 {
    20
}
fn default_json_limit() -> usize {
    1024 * 1024
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            http_host: default_host(),
            http_port: default_port(),
            http_workers: 0,
            shutdown_timeout_secs: default_shutdown_timeout(),
            json_limit_bytes: default_json_limit(),
        }
    }
}

impl HttpSettings {
    /// Loopback on an ephemeral port: what tests and the all-in-one binary use for
    /// services that only the gateway talks to.
    pub fn ephemeral() -> Self {
        Self {
            http_host: "127.0.0.1".into(),
            http_port: 0,
            http_workers: 1,
            shutdown_timeout_secs: 5,
            ..Self::default()
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.http_host.trim().is_empty() {
            return Err(ConfigError::Invalid("http_host must not be empty".into()));
        }
        if self.json_limit_bytes == 0 {
            return Err(ConfigError::Invalid(
                "json_limit_bytes must be positive".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    // figment::Error is large by design; Jail's closure signature is theirs.
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::result_large_err)]
    use super::*;
    use figment::Jail;

    #[derive(Debug, Deserialize)]
    struct Sample {
        #[serde(flatten)]
        http: HttpSettings,
        #[serde(default)]
        name: String,
    }
    impl Validate for Sample {
        fn validate(&self) -> Result<(), ConfigError> {
            self.http.validate()
        }
    }

    #[test]
    fn env_overrides_file_overrides_defaults() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "c.toml",
                "http_port = 9000\nname = \"from-file\"\nhttp_workers = 3",
            )?;
            jail.set_env("CARETRAIL_HTTP_PORT", "9100");
            let s: Sample = load(Some(Path::new("c.toml"))).expect("load");
            assert_eq!(s.http.http_port, 9100, "env wins over file");
            assert_eq!(s.http.http_workers, 3, "file wins over default");
            assert_eq!(s.name, "from-file");
            assert_eq!(s.http.shutdown_timeout_secs, 20, "default kept");
            Ok(())
        });
    }

    #[test]
    fn bad_values_are_reported() {
        Jail::expect_with(|jail| {
            jail.set_env("CARETRAIL_HTTP_PORT", "not-a-port");
            let err = load::<Sample>(None).unwrap_err();
            // Flattened sections lose the key in serde's error; the value and type remain.
            assert!(err.to_string().contains("not-a-port"), "{err}");
            assert!(err.to_string().contains("u16"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn missing_file_is_an_error() {
        Jail::expect_with(|_| {
            let err = load::<Sample>(Some(Path::new("nope.toml"))).unwrap_err();
            assert!(matches!(err, ConfigError::MissingFile(_)));
            Ok(())
        });
    }

    #[test]
    fn validation_runs() {
        Jail::expect_with(|jail| {
            jail.set_env("CARETRAIL_JSON_LIMIT_BYTES", "0");
            assert!(load::<Sample>(None).is_err());
            Ok(())
        });
    }
}
