//! Test support: settings for a service on port 0 with a fresh database and its own bus
//! prefix, on the embedded adapters or on the real PostgreSQL and RabbitMQ.

use caretrail_bus::BusSettings;
use caretrail_db::DbSettings;
use caretrail_platform::config::{HttpSettings, LogFormat};

use crate::ServiceSettings;

/// Which adapters a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite file + in-process bus (the embedded default).
    Embedded,
    /// The real PostgreSQL and RabbitMQ of `CARETRAIL_TEST_PG_URL` / `CARETRAIL_TEST_AMQP_URL`.
    Real,
}

pub fn amqp_url() -> String {
    std::env::var("CARETRAIL_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_string())
}

pub fn unique_prefix(tag: &str) -> String {
    format!("t-{tag}-{}", &uuid_like())
}

fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}{:x}{n}", t, std::process::id())
}

/// Settings for one service under test; keep the guard alive as long as the service.
pub async fn settings(
    backend: Backend,
    schema: &str,
) -> (ServiceSettings, Option<tempfile::TempDir>) {
    let (db, dir): (DbSettings, _) = match backend {
        Backend::Embedded => {
            let (db, dir) = caretrail_db::testing::fresh_sqlite();
            (db, Some(dir))
        }
        Backend::Real => (
            caretrail_db::testing::fresh_postgres(Some(schema)).await,
            None,
        ),
    };
    let bus = BusSettings {
        bus_url: match backend {
            Backend::Embedded => "inprocess".to_string(),
            Backend::Real => amqp_url(),
        }
        .into(),
        bus_prefix: unique_prefix(schema),
        bus_quorum_queues: false,
    };
    (
        ServiceSettings {
            http: HttpSettings::ephemeral(),
            db,
            bus,
            log_format: LogFormat::Pretty,
        },
        dir,
    )
}
