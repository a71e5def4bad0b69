//! Test support: settings for a service on port 0 with a fresh database and its own bus
//! prefix, on the embedded adapters or on the real PostgreSQL and RabbitMQ.

use caretrail_bus::BusSettings;
use caretrail_db::DbSettings;
use caretrail_platform::config::{HttpSettings, LogFormat};
pub use tempfile;

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

/// The start-up test every service has: it builds from its library on port 0, on the
/// embedded adapters and on the real PostgreSQL and RabbitMQ, migrates its schema, reports
/// ready with database and bus checks, answers unknown routes with 404 and stops cleanly.
///
/// `service_start_tests!(caretrail_audit, "audit");` in the service's test binary, which
/// needs `tokio`, `reqwest` and `serde_json`.
#[macro_export]
macro_rules! service_start_tests {
    ($krate:ident, $schema:literal) => {
        $crate::service_start_tests!($krate, $schema, |service, _dir| $krate::Config { service });
    };
    // `$config` builds the service's config from the shared settings and a scratch directory.
    ($krate:ident, $schema:literal, $config:expr) => {
        async fn starts_and_is_ready(backend: $crate::testing::Backend) {
            caretrail_platform::telemetry::init_for_tests();
            let (service, dir) = $crate::testing::settings(backend, $schema).await;
            let scratch = $crate::testing::tempfile::tempdir().expect("scratch dir");
            let make: fn(_, &std::path::Path) -> $krate::Config = $config;
            let app = $krate::Application::build(make(service, scratch.path()))
                .await
                .expect("build");
            let _keep = dir;
            let port = app.port();
            assert_ne!(port, 0);
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            let running = tokio::spawn(app.run_until(async {
                let _ = stop_rx.await;
            }));
            let base = format!("http://127.0.0.1:{port}");
            let ready: serde_json::Value = reqwest::get(format!("{base}/readyz"))
                .await
                .expect("readyz")
                .json()
                .await
                .expect("readyz body");
            assert_eq!(ready["status"], "ready", "{ready}");
            assert_eq!(ready["checks"]["database"], "ok");
            assert_eq!(ready["checks"]["bus"], "ok");
            let missing = reqwest::get(format!("{base}/v1/nothing-here"))
                .await
                .expect("request");
            assert_eq!(missing.status(), 404);
            stop_tx.send(()).expect("stop");
            running.await.expect("join").expect("clean stop");
        }

        #[tokio::test]
        async fn starts_embedded() {
            starts_and_is_ready($crate::testing::Backend::Embedded).await;
        }

        #[tokio::test]
        async fn starts_on_postgres_and_rabbitmq() {
            starts_and_is_ready($crate::testing::Backend::Real).await;
        }
    };
}

/// A TCP forwarder a test can cut — every open connection is dropped and new ones refused —
/// and restore: a replica's broker or storage link failing while the rest keeps running.
pub struct CuttableProxy {
    /// `host:port` to connect to instead of the target.
    pub addr: std::net::SocketAddr,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    open: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl CuttableProxy {
    /// Forwards a fresh local port to `target` (`host:port`).
    pub async fn start(target: &str) -> std::io::Result<Self> {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let open: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>> =
            std::sync::Arc::default();
        let (flag, conns, target) = (up.clone(), open.clone(), target.to_string());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !flag.load(Ordering::SeqCst) {
                    continue;
                }
                let target = target.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                if let Ok(mut conns) = conns.lock() {
                    conns.retain(|c| !c.is_finished());
                    conns.push(task.abort_handle());
                }
            }
        });
        Ok(Self {
            addr,
            up,
            open,
            accept,
        })
    }

    /// Drops every open connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        if let Ok(mut conns) = self.open.lock() {
            for c in conns.drain(..) {
                c.abort();
            }
        }
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for CuttableProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}
