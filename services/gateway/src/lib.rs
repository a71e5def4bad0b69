//! The gateway: Caretrail's one public HTTP surface. It routes `/v1/...` to the services'
//! internal HTTP APIs (streaming bodies both ways), propagates request ids and trace
//! context, enforces timeouts and a body-size limit, and serves the OpenAPI document and
//! its docs UI. Every error it produces is problem+json.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::{future::Future, time::Duration};

use actix_web::{HttpResponse, web};
use caretrail_bus::BusSettings;
use caretrail_platform::{
    auth::{AuthSettings, Verifier},
    config::{ConfigError, HttpSettings, LogFormat, Validate},
    health::{FnCheck, Health},
    http::{Runner, ServerParts, resource},
    metrics::Metrics,
};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use utoipa_swagger_ui::SwaggerUi;

pub mod client_address;
pub mod error;
pub mod openapi;
mod proxy;
pub mod routing;

pub use error::GatewayError;
pub use routing::Upstream;

pub const SERVICE: &str = "gateway";

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    #[serde(flatten)]
    pub http: HttpSettings,
    #[serde(default)]
    pub log_format: LogFormat,
    #[serde(flatten)]
    pub auth: AuthSettings,
    /// The bus carries token revocations to the gateway.
    #[serde(flatten)]
    pub bus: BusSettings,
    /// Internal base URLs of the services, e.g. `http://identity:8080`.
    pub identity_url: String,
    pub consent_url: String,
    pub ledger_url: String,
    pub object_store_url: String,
    pub audit_url: String,
    /// Seconds an upstream gets to answer a request without a body.
    #[serde(default = "default_upstream_timeout")]
    pub upstream_timeout_secs: u64,
    /// Seconds a request with a body (an upload) gets in total, body included.
    #[serde(default = "default_upload_timeout")]
    pub upload_timeout_secs: u64,
    /// Largest request body forwarded (record uploads stream through), in bytes.
    #[serde(default = "default_body_limit")]
    pub body_limit_bytes: u64,
    /// Proxies in front of the gateway (an ingress controller, a load balancer) whose
    /// `X-Forwarded-For` is believed, as comma-separated CIDRs or addresses: the client's
    /// address, not the proxy's, is then what login throttling counts and upstreams see
    /// ([`client_address`]). Empty (the default): the connection's peer is the client.
    #[serde(default)]
    pub trusted_proxies: String,
}

fn default_upstream_timeout() -> u64 {
    30
}
fn default_upload_timeout() -> u64 {
    3600
}
fn default_body_limit() -> u64 {
    1024 * 1024 * 1024
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        self.http.validate()?;
        for (name, url) in self.upstreams() {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::Invalid(format!(
                    "{name}_url must be an http(s) URL, got {url:?}"
                )));
            }
        }
        self.bus
            .validate()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        client_address::parse_trusted(&self.trusted_proxies).map_err(ConfigError::Invalid)?;
        if self.upstream_timeout_secs == 0 || self.body_limit_bytes == 0 {
            return Err(ConfigError::Invalid(
                "upstream_timeout_secs and body_limit_bytes must be positive".into(),
            ));
        }
        Ok(())
    }
}

impl Config {
    pub fn load() -> Result<Self, ConfigError> {
        caretrail_platform::config::load(None)
    }

    /// Gateway on `http` routing every service to `base_url` (tests).
    pub fn with_single_upstream(http: HttpSettings, base_url: &str) -> Self {
        Self {
            http,
            log_format: LogFormat::Pretty,
            auth: AuthSettings::default(),
            bus: BusSettings::default(),
            identity_url: base_url.into(),
            consent_url: base_url.into(),
            ledger_url: base_url.into(),
            object_store_url: base_url.into(),
            audit_url: base_url.into(),
            upstream_timeout_secs: default_upstream_timeout(),
            upload_timeout_secs: default_upload_timeout(),
            body_limit_bytes: default_body_limit(),
            trusted_proxies: String::new(),
        }
    }

    fn upstreams(&self) -> [(&'static str, &str); 5] {
        [
            ("identity", &self.identity_url),
            ("consent", &self.consent_url),
            ("ledger", &self.ledger_url),
            ("object_store", &self.object_store_url),
            ("audit", &self.audit_url),
        ]
    }

    pub fn base_url(&self, upstream: Upstream) -> &str {
        let url = match upstream {
            Upstream::Identity => &self.identity_url,
            Upstream::Consent => &self.consent_url,
            Upstream::Ledger => &self.ledger_url,
            Upstream::ObjectStore => &self.object_store_url,
            Upstream::Audit => &self.audit_url,
        };
        url.trim_end_matches('/')
    }
}

pub struct Application {
    runner: Runner,
    verifier: Verifier,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        config.validate()?;
        let document = openapi::embedded()?;
        let metrics = Metrics::new(SERVICE)?;
        let health = Health::new();
        let verifier = Verifier::from_settings(
            &config.auth,
            format!(
                "{}/.well-known/jwks.json",
                config.base_url(Upstream::Identity)
            ),
        );
        let bus = caretrail_bus::connect(&config.bus).await?;
        // Until identity has told this replica which tokens were revoked while it was not
        // listening, it could accept them: not ready until then. The follower asks again on
        // every reconnection to the broker and every half minute.
        let following = caretrail_runtime::revocations::follow(
            bus.as_ref(),
            SERVICE,
            verifier.clone(),
            Arc::new(RevocationsOverHttp::new(&config)),
        )
        .await?;
        let revocations_loaded = following.loaded();
        let loaded = revocations_loaded.clone();
        health.register(Arc::new(FnCheck::new("revocations", move || {
            let ok = loaded.load(Ordering::Acquire);
            async move {
                if ok {
                    Ok(())
                } else {
                    Err("revoked tokens not yet loaded from identity".to_string())
                }
            }
        })));
        let proxy = proxy::ProxySettings {
            upstreams: web::Data::new(config.clone()),
            timeout: Duration::from_secs(config.upstream_timeout_secs),
            upload_timeout: Duration::from_secs(
                config.upload_timeout_secs.max(config.upstream_timeout_secs),
            ),
            body_limit: config.body_limit_bytes,
            verifier: verifier.clone(),
            documented: Arc::new(routing::DocumentedMethods::from_document(&document)),
            trusted_proxies: client_address::parse_trusted(&config.trusted_proxies)
                .map_err(|e| anyhow::anyhow!(e))?
                .into(),
            // The same rate as identity's own per-address bucket.
            credential_checks: Arc::new(caretrail_platform::throttle::Throttle::new(
                caretrail_platform::throttle::Rate::CREDENTIAL_CHECKS_PER_ADDRESS,
                100_000,
            )),
        };
        let configure = move |cfg: &mut web::ServiceConfig| {
            cfg.app_data(proxy.upstreams.clone())
                .app_data(web::Data::new(proxy.clone()))
                .service(resource("/openapi.json").get(openapi::serve))
                .service(resource("/docs").get(|| async {
                    HttpResponse::PermanentRedirect()
                        .insert_header(("location", "/docs/"))
                        .finish()
                }))
                .service(
                    SwaggerUi::new("/docs/{_:.*}").external_urls_from_iter_unchecked([(
                        "/caretrail-openapi.json",
                        document.clone(),
                    )]),
                )
                .default_service(web::to(proxy::forward));
        };
        let (port, server) = caretrail_platform::http::start(ServerParts {
            service: SERVICE,
            settings: config.http.clone(),
            health: health.clone(),
            metrics,
            configure,
        })?;
        let mut runner = Runner::new(port, server, health, CancellationToken::new());
        runner.on_shutdown(move || async move {
            following.shutdown().await;
        });
        Ok(Self { runner, verifier })
    }

    pub fn port(&self) -> u16 {
        self.runner.port()
    }

    /// The token verifier (its revocation list), for tests.
    pub fn verifier(&self) -> Verifier {
        self.verifier.clone()
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.runner.run_until_stopped().await
    }

    pub async fn run_until(self, stop: impl Future<Output = ()>) -> std::io::Result<()> {
        self.runner.run_until(stop).await
    }
}

/// Identity's list of revocations in force, over its internal HTTP API (the gateway knows
/// identity's URL and serves no RPC).
struct RevocationsOverHttp {
    url: String,
    client: reqwest::Client,
}

impl RevocationsOverHttp {
    fn new(config: &Config) -> Self {
        Self {
            url: format!(
                "{}/internal/revoked-tokens",
                config.base_url(Upstream::Identity)
            ),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
        }
    }
}

#[async_trait::async_trait]
impl caretrail_runtime::revocations::RevocationSource for RevocationsOverHttp {
    async fn load(&self) -> Result<caretrail_contracts::events::RevocationsV1, String> {
        async {
            self.client
                .get(&self.url)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await
        }
        .await
        .map_err(|e: reqwest::Error| e.to_string())
    }
}
