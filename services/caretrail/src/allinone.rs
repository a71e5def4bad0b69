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
    #[serde(flatten)]
    pub bus: BusSettings,
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

pub fn openapi_json() -> anyhow::Result<String> {
    let doc = caretrail_gateway::openapi::build_document(vec![
        caretrail_identity::openapi(),
        caretrail_consent::openapi(),
        caretrail_ledger::openapi(),
        caretrail_object_store::openapi(),
        caretrail_audit::openapi(),
    ]);
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

    macro_rules! start {
        ($krate:ident) => {{
            let app = $krate::Application::build($krate::Config {
                service: config.service($krate::SERVICE),
            })
            .await
            .with_context(|| format!("starting {}", $krate::SERVICE))?;
            let port = app.port();
            let token = stop_services.clone();
            running.spawn(async move { app.run_until(token.cancelled_owned()).await });
            format!("http://127.0.0.1:{port}")
        }};
    }

    let identity = start!(caretrail_identity);
    let consent = start!(caretrail_consent);
    let ledger = start!(caretrail_ledger);
    let object_store = start!(caretrail_object_store);
    let audit = start!(caretrail_audit);

    let gateway = caretrail_gateway::Application::build(caretrail_gateway::Config {
        http: HttpSettings {
            http_host: config.http_host.clone(),
            http_port: config.http_port,
            ..HttpSettings::default()
        },
        log_format: config.log_format,
        identity_url: identity,
        consent_url: consent,
        ledger_url: ledger,
        object_store_url: object_store,
        audit_url: audit,
        upstream_timeout_secs: 30,
        body_limit_bytes: 1024 * 1024 * 1024,
    })
    .await
    .context("starting the gateway")?;

    let base = format!(
        "http://{}:{}",
        display_host(&config.http_host),
        gateway.port()
    );
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
