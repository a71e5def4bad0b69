//! Ledger service. The append-only, replicated, per-tenant verifiable log: entries, Merkle trees, signed checkpoints and proofs.
//!
//! A library exposing [`Application::build`]; `main.rs` only loads config and runs it.

use std::future::Future;

use actix_web::web;
use caretrail_platform::{
    config::{ConfigError, Validate},
    http::Runner,
};
use caretrail_runtime::{Infra, ServiceSettings};
use serde::Deserialize;
use utoipa::OpenApi;

pub mod error;
pub mod storage;

pub use error::LedgerError;

pub const SERVICE: &str = "ledger";

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    #[serde(flatten)]
    pub service: ServiceSettings,
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        self.service.validate()
    }
}

impl Config {
    /// Defaults → `CARETRAIL_CONFIG` file → `CARETRAIL_*` environment.
    pub fn load() -> Result<Self, ConfigError> {
        caretrail_platform::config::load(None)
    }
}

pub struct Application {
    runner: Runner,
}

impl Application {
    /// Connects and migrates the database, connects the bus and binds the HTTP port
    /// (`http_port = 0` picks a free one).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let infra =
            Infra::prepare::<caretrail_migrations::ledger::Migrator>(SERVICE, &config.service)
                .await?;
        let runner = infra.serve(config.service.http.clone(), routes)?;
        Ok(Self { runner })
    }

    pub fn port(&self) -> u16 {
        self.runner.port()
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

/// The service's public routes (none yet beyond the operational endpoints).
fn routes(_cfg: &mut web::ServiceConfig) {}

#[derive(OpenApi)]
#[openapi(
    tags((name = "ledger", description = "The append-only, replicated, per-tenant verifiable log: entries, Merkle trees, signed checkpoints and proofs.")),
    components(schemas(caretrail_platform::Problem, caretrail_platform::FieldError))
)]
struct ApiDoc;

/// This service's part of the public OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
