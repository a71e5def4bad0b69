//! Wiring of the all-in-one process.

use std::path::{Path, PathBuf};

use anyhow::Context;
use caretrail_bus::BusSettings;
use caretrail_db::DbSettings;
use caretrail_platform::config::{ConfigError, HttpSettings, LogFormat, Validate};
use caretrail_runtime::ServiceSettings;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Deserialize)]
pub struct AllInOneConfig {
    #[serde(default = "default_host")]
    pub http_host: String,
    #[serde(default = "default_port")]
    pub http_port: u16,
    /// Where SQLite files, ledger data and objects live.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default)]
    pub log_format: LogFormat,
    /// PostgreSQL instead of SQLite files: each service gets its own schema in it.
    #[serde(default)]
    pub database_url: Option<SecretString>,
    /// Seals keys at rest (64 hex). Unset: generated once into `<data_dir>/master.key`.
    #[serde(default)]
    pub master_key: Option<SecretString>,
    /// First start only: create the demo tenant and write `<data_dir>/dev-credentials.json`.
    #[serde(default)]
    pub seed_demo: bool,
    /// Lifetime of access tokens, seconds (60..=86400; identity's default, 900, when unset).
    #[serde(default)]
    pub access_token_ttl_secs: Option<i64>,
    /// Proxies in front of the server whose `X-Forwarded-For` is believed (comma-separated
    /// CIDRs; the gateway's `trusted_proxies`). Empty: the connection's peer is the client.
    #[serde(default)]
    pub trusted_proxies: String,
    #[serde(flatten)]
    pub bus: BusSettings,
    /// Record storage: the local `<data_dir>/objects` directory by default, or S3
    /// (`CARETRAIL_STORAGE=s3`, `CARETRAIL_S3_ENDPOINT`, …); see the object store's settings.
    #[serde(flatten)]
    pub store: caretrail_object_store::StoreSettings,
}

fn default_host() -> String {
    "127.0.0.1".into()
}
fn default_port() -> u16 {
    8080
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("./data")
}

impl Validate for AllInOneConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.bus
            .validate()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if let Some(url) = &self.database_url
            && !url.expose_secret().starts_with("postgres")
        {
            return Err(ConfigError::Invalid(
                "database_url must be a postgres:// URL (leave it unset for SQLite files)".into(),
            ));
        }
        Ok(())
    }
}

impl AllInOneConfig {
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        caretrail_platform::config::load(file)
    }

    fn db_for(&self, service: &str) -> DbSettings {
        let schema = service.replace('-', "_");
        match &self.database_url {
            Some(url) => DbSettings {
                database_url: url.clone(),
                database_schema: Some(schema),
                database_max_connections: 5,
                run_migrations: true,
            },
            None => DbSettings::sqlite_file(&self.data_dir.join(format!("{schema}.db"))),
        }
    }

    fn service(&self, name: &str) -> ServiceSettings {
        ServiceSettings {
            http: HttpSettings::ephemeral(),
            db: self.db_for(name),
            bus: self.bus.clone(),
            log_format: self.log_format,
        }
    }
}

impl AllInOneConfig {
    /// The configured master key, or the one kept in the data directory (created 0600 on
    /// first use). Production deployments pass it from a secret store instead.
    fn master_key(&self) -> anyhow::Result<SecretString> {
        if let Some(k) = &self.master_key {
            return Ok(k.clone());
        }
        let path = self.data_dir.join("master.key");
        if let Ok(text) = std::fs::read_to_string(&path) {
            return Ok(SecretString::from(text.trim().to_string()));
        }
        let key = caretrail_identity::secrets::MasterKey::generate_hex()?;
        write_private(&path, key.expose_secret().as_bytes())?;
        tracing::warn!(path = %path.display(), "generated a master key; back it up: without it custodial keys are lost");
        Ok(key)
    }

    /// The object store's settings: objects under the data directory unless configured, and
    /// a keyring (root keys sealing the tenants' KEKs) created 0600 in the data directory on
    /// first use unless one is given. Production mounts the keyring from a Kubernetes Secret.
    fn store_settings(&self) -> anyhow::Result<caretrail_object_store::StoreSettings> {
        let mut store = self.store.clone();
        if store.objects_dir == caretrail_object_store::StoreSettings::default().objects_dir {
            store.objects_dir = self.data_dir.join("objects");
        }
        if store.keyring_file.is_none() && store.keyring.is_none() {
            let path = self.data_dir.join("keyring.json");
            if !path.exists() {
                let ring = caretrail_object_store::keys::Keyring::generate_json()?;
                write_private(&path, ring.expose_secret().as_bytes())?;
                tracing::warn!(path = %path.display(), "generated the object store keyring; back it up: without it no record can be decrypted");
            }
            store.keyring_file = Some(path);
        }
        Ok(store)
    }

    fn identity(&self, base_url: &str) -> anyhow::Result<caretrail_identity::Config> {
        let mut config =
            caretrail_identity::Config::new(self.service("identity"), self.master_key()?);
        config.public_base_url = base_url.to_string();
        if let Some(ttl) = self.access_token_ttl_secs {
            config.access_token_ttl_secs = ttl;
        }
        Ok(config)
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    caretrail_platform::files::write_private(path, bytes)
        .with_context(|| format!("creating {}", path.display()))
}

fn public_base(config: &AllInOneConfig, port: u16) -> String {
    format!("http://{}:{}", display_host(&config.http_host), port)
}

/// `caretrail bootstrap`: the platform operator's first credential, printed once.
pub async fn bootstrap(config: &AllInOneConfig, name: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)?;
    let identity = caretrail_identity::Application::build(
        config.identity(&public_base(config, config.http_port))?,
    )
    .await?;
    let cred = caretrail_identity::seed::bootstrap_operator(&identity.state(), name).await?;
    identity.run_until(async {}).await?;
    use std::io::Write;
    let _ = writeln!(
        std::io::stdout(),
        "{}",
        serde_json::to_string_pretty(&cred)?
    );
    Ok(())
}

pub fn openapi_json() -> anyhow::Result<String> {
    let doc = caretrail_gateway::openapi::build_document(vec![
        caretrail_identity::openapi(),
        caretrail_consent::openapi(),
        caretrail_ledger::openapi(),
        caretrail_object_store::openapi(),
        caretrail_audit::openapi(),
    ])
    .map_err(|clashes| {
        anyhow::anyhow!(
            "the services' OpenAPI documents clash:\n  {}",
            clashes.join("\n  ")
        )
    })?;
    Ok(doc.to_pretty_json()?)
}

pub async fn migrate(config: &AllInOneConfig) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    for service in caretrail_migrations::SERVICES {
        let settings = config.db_for(service);
        let db = caretrail_db::connect(&settings)
            .await
            .with_context(|| format!("connecting the {service} database"))?;
        caretrail_migrations::migrate_service(service, &db)
            .await
            .with_context(|| format!("migrating {service}"))?;
        tracing::info!(service, "migrations applied");
    }
    Ok(())
}

pub async fn serve(config: AllInOneConfig) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let stop_services = CancellationToken::new();
    let mut running = tokio::task::JoinSet::new();

    let identity_app = caretrail_identity::Application::build(
        config.identity(&public_base(&config, config.http_port))?,
    )
    .await
    .context("starting identity")?;
    let identity_state = identity_app.state();
    let identity = format!("http://127.0.0.1:{}", identity_app.port());
    {
        let token = stop_services.clone();
        running.spawn(async move { identity_app.run_until(token.cancelled_owned()).await });
    }
    let consent = {
        let mut consent_config = caretrail_consent::Config::new(
            config.service(caretrail_consent::SERVICE),
            caretrail_consent::ConsentSettings::default(),
        );
        consent_config.auth.jwks_url = Some(format!("{identity}/.well-known/jwks.json"));
        let app = caretrail_consent::Application::build(consent_config)
            .await
            .context("starting consent")?;
        let port = app.port();
        let token = stop_services.clone();
        running.spawn(async move { app.run_until(token.cancelled_owned()).await });
        format!("http://127.0.0.1:{port}")
    };
    let ledger = {
        let mut ledger_config = caretrail_ledger::Config::new(
            config.service(caretrail_ledger::SERVICE),
            caretrail_ledger::LedgerSettings {
                ledger_data_dir: config.data_dir.join("ledger"),
                ..Default::default()
            },
        );
        ledger_config.auth.jwks_url = Some(format!("{identity}/.well-known/jwks.json"));
        let app = caretrail_ledger::Application::build(ledger_config)
            .await
            .context("starting ledger")?;
        let port = app.port();
        let token = stop_services.clone();
        running.spawn(async move { app.run_until(token.cancelled_owned()).await });
        format!("http://127.0.0.1:{port}")
    };
    let object_store = {
        let mut store_config = caretrail_object_store::Config::new(
            config.service(caretrail_object_store::SERVICE),
            config.store_settings()?,
        );
        store_config.auth.jwks_url = Some(format!("{identity}/.well-known/jwks.json"));
        let app = caretrail_object_store::Application::build(store_config)
            .await
            .context("starting object-store")?;
        let port = app.port();
        let token = stop_services.clone();
        running.spawn(async move { app.run_until(token.cancelled_owned()).await });
        format!("http://127.0.0.1:{port}")
    };
    let audit = {
        let mut audit_config =
            caretrail_audit::Config::new(config.service(caretrail_audit::SERVICE));
        audit_config.auth.jwks_url = Some(format!("{identity}/.well-known/jwks.json"));
        // One machine, few tenants: the witness can look often, so a demo sees its
        // cosignature within seconds.
        audit_config.witness_interval_ms = 2_000;
        let app = caretrail_audit::Application::build(audit_config)
            .await
            .context("starting audit")?;
        let port = app.port();
        let token = stop_services.clone();
        running.spawn(async move { app.run_until(token.cancelled_owned()).await });
        format!("http://127.0.0.1:{port}")
    };

    let gateway = caretrail_gateway::Application::build(caretrail_gateway::Config {
        http: HttpSettings {
            http_host: config.http_host.clone(),
            http_port: config.http_port,
            ..HttpSettings::default()
        },
        log_format: config.log_format,
        auth: caretrail_platform::auth::AuthSettings::default(),
        bus: config.bus.clone(),
        identity_url: identity,
        consent_url: consent,
        ledger_url: ledger,
        object_store_url: object_store,
        audit_url: audit,
        upstream_timeout_secs: 30,
        upload_timeout_secs: 3600,
        body_limit_bytes: config.store.max_record_bytes,
        trusted_proxies: config.trusted_proxies.clone(),
    })
    .await
    .context("starting the gateway")?;

    let base = public_base(&config, gateway.port());
    let credentials_file = config.data_dir.join("dev-credentials.json");
    let mut seeded = None;
    if config.seed_demo && !credentials_file.exists() {
        let demo = caretrail_identity::seed::demo(&identity_state, &base)
            .await
            .context("seeding the demo tenant")?;
        write_private(
            &credentials_file,
            serde_json::to_string_pretty(&demo)?.as_bytes(),
        )?;
        seeded = Some(credentials_file.clone());
    }
    // A closed stdout (piped into `head`, a detached terminal) must not stop the server.
    let banner = [
        String::new(),
        format!(
            "  Caretrail is running (all-in-one, data in {})",
            config.data_dir.display()
        ),
        format!("    API      {base}/v1/"),
        format!("    Docs     {base}/docs/"),
        format!("    OpenAPI  {base}/openapi.json"),
        format!("    Health   {base}/healthz  {base}/readyz  {base}/metrics"),
        match (&seeded, credentials_file.exists()) {
            (Some(path), _) => format!(
                "    Demo     tenant created; credentials in {}",
                path.display()
            ),
            (None, true) => format!("    Demo     credentials in {}", credentials_file.display()),
            (None, false) => {
                "    Operator caretrail bootstrap prints the first operator credential".to_string()
            }
        },
        "  Stop with Ctrl-C.".to_string(),
        String::new(),
    ];
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        for line in banner {
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
    }

    // The gateway drains first so no request reaches a stopping service.
    let gateway_result = gateway.run_until_stopped().await;
    stop_services.cancel();
    while let Some(joined) = running.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "a service stopped with an error"),
            Err(e) => tracing::error!(error = %e, "a service task failed"),
        }
    }
    gateway_result.context("gateway")
}

fn display_host(host: &str) -> &str {
    if host == "0.0.0.0" { "127.0.0.1" } else { host }
}
