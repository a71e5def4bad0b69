//! Audit service: the queryable index of everything anchored — record lifecycles, access
//! histories, grants and their use, break-glass uses — for regulators, each event linked to
//! its ledger entry and served with a proof that verifies offline.
//!
//! A library exposing [`Application::build`]; `main.rs` only loads config and runs it.

use std::future::Future;
use std::time::Duration;

use actix_web::web;
use caretrail_platform::{
    auth::{AuthSettings, Verifier},
    config::{ConfigError, Validate},
    http::{Runner, resource},
};
use caretrail_runtime::clients::{IdentityClient, LedgerClient};
use caretrail_runtime::{Infra, ServiceSettings};
use sea_orm::DatabaseConnection;
use serde::Deserialize;
use utoipa::OpenApi;

pub mod anomalies;
pub mod api;
pub mod entities;
pub mod error;
pub mod fhir;
pub mod indexer;
pub mod model;
pub mod witness;

pub use error::AuditError;

pub const SERVICE: &str = "audit";

/// Where the service finds the identity service's keys when `jwks_url` is not set.
const DEFAULT_JWKS_URL: &str = "http://127.0.0.1:8080/.well-known/jwks.json";

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    #[serde(flatten)]
    pub service: ServiceSettings,
    #[serde(flatten)]
    pub auth: AuthSettings,
    /// Timeout of calls to the ledger (proof bundles).
    #[serde(default = "default_rpc_timeout")]
    pub rpc_timeout_ms: u64,
    /// A user's accesses in an hour are flagged above this many…
    #[serde(default = "default_burst")]
    pub anomaly_access_min_per_hour: u64,
    /// …and above this multiple of their hourly average over the previous week.
    #[serde(default = "default_factor")]
    pub anomaly_access_factor: f64,
    /// The built-in witness: `cosign` (check every tenant's checkpoints and cosign them as
    /// the tenant's regulator), `verify` (check and alert only) or `off`.
    #[serde(default = "default_witness")]
    pub witness: witness::WitnessMode,
    /// How often the witness checks the ledger's checkpoints.
    #[serde(default = "default_witness_interval")]
    pub witness_interval_ms: u64,
}

fn default_witness() -> witness::WitnessMode {
    witness::WitnessMode::Cosign
}
fn default_witness_interval() -> u64 {
    10_000
}

fn default_burst() -> u64 {
    50
}
fn default_factor() -> f64 {
    5.0
}

fn default_rpc_timeout() -> u64 {
    10_000
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        self.service.validate()?;
        if self.anomaly_access_factor.is_nan() || self.anomaly_access_factor <= 1.0 {
            return Err(ConfigError::Invalid(
                "anomaly_access_factor must be > 1".into(),
            ));
        }
        if self.witness_interval_ms < 100 {
            return Err(ConfigError::Invalid(
                "witness_interval_ms must be ≥ 100".into(),
            ));
        }
        if self.rpc_timeout_ms == 0 {
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
    pub fn new(service: ServiceSettings) -> Self {
        Self {
            service,
            auth: AuthSettings::default(),
            rpc_timeout_ms: default_rpc_timeout(),
            anomaly_access_min_per_hour: default_burst(),
            anomaly_access_factor: default_factor(),
            witness: default_witness(),
            witness_interval_ms: default_witness_interval(),
        }
    }
}

/// What every handler gets.
pub struct State {
    pub db: DatabaseConnection,
    pub ledger: LedgerClient,
    pub witness: witness::WitnessMode,
}

pub struct Application {
    runner: Runner,
    state: web::Data<State>,
}

impl Application {
    /// Connects and migrates the database, connects the bus, starts the indexer and binds
    /// the HTTP port (`http_port = 0` picks a free one).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        config.validate()?;
        let mut infra =
            Infra::prepare::<caretrail_migrations::audit::Migrator>(SERVICE, &config.service)
                .await?;
        let flags = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "audit_anomalies_total",
                "Anomalies flagged by the audit service",
            ),
            &["kind"],
        )?;
        infra.metrics.registry().register(Box::new(flags.clone()))?;
        let checks = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "audit_witness_checks_total",
                "Checkpoint checks by the built-in witness, by outcome",
            ),
            &["outcome"],
        )?;
        infra
            .metrics
            .registry()
            .register(Box::new(checks.clone()))?;
        let rpc_timeout = Duration::from_millis(config.rpc_timeout_ms);
        let witness = witness::Witness {
            db: infra.db.clone(),
            port: std::sync::Arc::new(witness::BusPort {
                ledger: LedgerClient::new(infra.bus.clone(), rpc_timeout),
                identity: IdentityClient::new(infra.bus.clone(), rpc_timeout),
            }),
            mode: config.witness,
            metrics: witness::WitnessMetrics {
                checks,
                flags: flags.clone(),
            },
        };
        infra.add_consumer(
            indexer::start(
                infra.bus.as_ref(),
                indexer::Indexer {
                    db: infra.db.clone(),
                    rule: anomalies::VolumeRule {
                        min_per_hour: config.anomaly_access_min_per_hour,
                        factor: config.anomaly_access_factor,
                    },
                    flags,
                    outbox: infra.outbox.clone(),
                },
            )
            .await?,
        );
        let jwks = config
            .auth
            .jwks_url
            .clone()
            .unwrap_or_else(|| DEFAULT_JWKS_URL.to_string());
        let verifier = Verifier::from_settings(&config.auth, jwks);
        infra.follow_revocations(&verifier).await?;
        let state = web::Data::new(State {
            db: infra.db.clone(),
            ledger: LedgerClient::new(infra.bus.clone(), rpc_timeout),
            witness: config.witness,
        });
        let stop = tokio_util::sync::CancellationToken::new();
        let witnessing = (config.witness != witness::WitnessMode::Off).then(|| {
            tokio::spawn(witness.run(
                Duration::from_millis(config.witness_interval_ms),
                stop.clone(),
            ))
        });
        let data = state.clone();
        let verifier_data = web::Data::new(verifier);
        let mut runner = infra.serve(config.service.http.clone(), move |cfg| {
            cfg.app_data(data.clone()).app_data(verifier_data.clone());
            routes(cfg);
        })?;
        runner.on_shutdown(move || async move {
            stop.cancel();
            if let Some(task) = witnessing {
                let _ = task.await;
            }
        });
        Ok(Self { runner, state })
    }

    pub fn port(&self) -> u16 {
        self.runner.port()
    }

    /// Shared state (tests inspect the index through it).
    pub fn state(&self) -> web::Data<State> {
        self.state.clone()
    }

    /// Serves until SIGTERM/SIGINT, then drains requests and consumers.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.runner.run_until_stopped().await
    }

    /// Serves until `stop` resolves (tests, the all-in-one binary).
    pub async fn run_until(self, stop: impl Future<Output = ()>) -> std::io::Result<()> {
        self.runner.run_until(stop).await
    }
}

fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/v1/audit/anomalies").get(api::anomalies))
        .service(resource("/v1/audit/records/{record_id}/trail").get(api::trail))
        .service(resource("/v1/audit/records/{record_id}/trail/fhir").get(api::trail_fhir))
        .service(resource("/v1/audit/records/{record_id}/trail/bundle").get(api::trail_bundle))
        .service(resource("/v1/audit/events").get(api::events))
        .service(resource("/v1/audit/reports/access-summary").get(api::access_summary))
        .service(resource("/v1/audit/witness").get(api::witness));
}

use caretrail_platform::auth::BearerAuth;

#[derive(OpenApi)]
#[openapi(
    paths(api::trail, api::trail_fhir, api::trail_bundle, api::events, api::access_summary, api::anomalies, api::witness),
    components(schemas(caretrail_platform::Problem, caretrail_platform::FieldError)),
    modifiers(&BearerAuth),
    tags((name = "audit", description = "The regulator's view: record trails with ledger proofs, event search, access reports")),
)]
struct ApiDoc;

/// This service's part of the public OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
