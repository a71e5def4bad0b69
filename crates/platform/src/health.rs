//! Liveness and readiness. Liveness says the process is up; readiness says its dependencies
//! answer and it is not draining, so Kubernetes routes traffic to it.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures::future::BoxFuture;
use serde::Serialize;

/// A dependency whose reachability gates readiness (database, bus, upstreams).
pub trait HealthCheck: Send + Sync {
    fn name(&self) -> &str;
    fn check(&self) -> BoxFuture<'_, Result<(), String>>;
}

#[derive(Clone, Default)]
pub struct Health {
    checks: Arc<std::sync::RwLock<Vec<Arc<dyn HealthCheck>>>>,
    draining: Arc<AtomicBool>,
}

#[derive(Debug, Serialize)]
pub struct Readiness {
    pub status: &'static str,
    pub checks: std::collections::BTreeMap<String, String>,
}

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

impl Health {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register(&self, check: Arc<dyn HealthCheck>) {
        if let Ok(mut checks) = self.checks.write() {
            checks.push(check);
        }
    }

    /// Marks the process as shutting down: readiness fails so no new traffic arrives.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub async fn readiness(&self) -> Readiness {
        let checks: Vec<Arc<dyn HealthCheck>> =
            self.checks.read().map(|c| c.clone()).unwrap_or_default();
        let results = futures::future::join_all(checks.iter().map(|c| async move {
            let outcome = match tokio::time::timeout(CHECK_TIMEOUT, c.check()).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e),
                Err(_) => Err("timed out".to_string()),
            };
            (c.name().to_string(), outcome)
        }))
        .await;
        let mut ready = !self.draining.load(Ordering::SeqCst);
        let mut map = std::collections::BTreeMap::new();
        if !ready {
            map.insert("lifecycle".to_string(), "draining".to_string());
        }
        for (name, outcome) in results {
            match outcome {
                Ok(()) => {
                    map.insert(name, "ok".to_string());
                }
                Err(e) => {
                    ready = false;
                    map.insert(name, format!("failing: {e}"));
                }
            }
        }
        Readiness {
            status: if ready { "ready" } else { "not_ready" },
            checks: map,
        }
    }
}

/// A check from a closure, for simple cases.
pub struct FnCheck<F> {
    name: String,
    f: F,
}

impl<F> FnCheck<F> {
    pub fn new(name: impl Into<String>, f: F) -> Self {
        Self {
            name: name.into(),
            f,
        }
    }
}

impl<F, Fut> HealthCheck for FnCheck<F>
where
    F: Fn() -> Fut + Send + Sync,
    Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }
    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin((self.f)())
    }
}
