//! The service starts from its library on port 0, on the embedded adapters and on the
//! real PostgreSQL and RabbitMQ, migrates its schema and reports ready.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use caretrail_ledger::{Application, Config};
use caretrail_runtime::testing::{Backend, settings};

async fn starts_and_is_ready(backend: Backend) {
    caretrail_platform::telemetry::init_for_tests();
    let (service, _dir) = settings(backend, "ledger").await;
    let app = Application::build(Config { service }).await.expect("build");
    let port = app.port();
    assert_ne!(port, 0);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(app.run_until(async {
        let _ = stop_rx.await;
    }));
    let base = format!("http://127.0.0.1:{port}");
    let ready: serde_json::Value = reqwest::get(format!("{base}/readyz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["checks"]["database"], "ok");
    assert_eq!(ready["checks"]["bus"], "ok");
    let missing = reqwest::get(format!("{base}/v1/nothing-here"))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    stop_tx.send(()).unwrap();
    running.await.unwrap().unwrap();
}

#[tokio::test]
async fn starts_embedded() {
    starts_and_is_ready(Backend::Embedded).await;
}

#[tokio::test]
async fn starts_on_postgres_and_rabbitmq() {
    starts_and_is_ready(Backend::Real).await;
}
