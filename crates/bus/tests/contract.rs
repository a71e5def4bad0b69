//! The bus contract, run against both adapters: the in-process one and RabbitMQ on the real
//! broker (`CARETRAIL_TEST_AMQP_URL`, default the local one). The outbox tests use SQLite
//! with the in-process bus and PostgreSQL with RabbitMQ.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use caretrail_bus::{
    Bus, BusError, Delivery, Event, HandlerError, InProcessBus, RabbitBus, RemoteError, RpcRequest,
    Subscription, handler_fn, inbox, outbox, rpc_fn,
};
use caretrail_db::sea_orm::{DatabaseConnection, TransactionTrait};
use tokio::sync::mpsc;
use uuid::Uuid;

#[derive(Clone, Copy, Debug)]
enum Backend {
    InProcess,
    Rabbit,
}

fn amqp_url() -> String {
    std::env::var("CARETRAIL_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_string())
}

fn prefix() -> String {
    format!("t-bus-{}", Uuid::new_v4().simple())
}

async fn bus(backend: Backend) -> Arc<dyn Bus> {
    caretrail_platform::telemetry::init_for_tests();
    match backend {
        Backend::InProcess => Arc::new(InProcessBus::new()),
        Backend::Rabbit => Arc::new(
            RabbitBus::connect(&amqp_url(), &prefix(), false)
                .await
                .expect("RabbitMQ is required for this test (infra/start-rabbitmq.sh)"),
        ),
    }
}

fn event(tenant: &str, service: &str, name: &str, n: u32) -> Event {
    Event::new(tenant, service, name, 1, &serde_json::json!({ "n": n })).unwrap()
}

async fn recv_n(rx: &mut mpsc::UnboundedReceiver<Delivery>, n: usize) -> Vec<Delivery> {
    let mut out = Vec::new();
    while out.len() < n {
        match tokio::time::timeout(Duration::from_secs(15), rx.recv()).await {
            Ok(Some(d)) => out.push(d),
            Ok(None) => break,
            Err(_) => panic!("timed out after {} of {n} deliveries", out.len()),
        }
    }
    out
}

async fn wait_dead_letters(bus: &dyn Bus, queue: &str, n: usize) -> Vec<Delivery> {
    let mut got = Vec::new();
    for _ in 0..150 {
        got.extend(bus.take_dead_letters(queue, n - got.len()).await.unwrap());
        if got.len() >= n {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("expected {n} dead letters, got {}", got.len());
}

macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn in_process() {
                super::$name(super::Backend::InProcess).await;
            }
            #[tokio::test]
            async fn rabbitmq() {
                super::$name(super::Backend::Rabbit).await;
            }
        }
    };
}

async fn publish_consume_ack(backend: Backend) {
    let bus = bus(backend).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let consumer = bus
        .subscribe(
            Subscription::new("pca").bind("*.identity.#"),
            handler_fn(move |d| {
                let tx = tx.clone();
                async move {
                    tx.send(d).unwrap();
                    Ok(())
                }
            }),
        )
        .await
        .unwrap();
    let a = event("ten_a", "identity", "tenant.created", 1);
    let skipped = event("ten_a", "consent", "grant.created", 2);
    let b = event("ten_b", "identity", "user.created", 3);
    for e in [&a, &skipped, &b] {
        bus.publish(e).await.unwrap();
    }
    let got = recv_n(&mut rx, 2).await;
    let ids: Vec<Uuid> = got.iter().map(|d| d.event.id).collect();
    assert_eq!(ids, vec![a.id, b.id], "matching events, in order");
    assert_eq!(got[0].event, a, "envelope intact");
    assert_eq!(got[0].attempt, 0);
    // Acked: nothing comes again, and the unbound event never arrives.
    assert!(
        tokio::time::timeout(Duration::from_millis(700), rx.recv())
            .await
            .is_err(),
        "no redelivery after ack and no unbound event"
    );
    consumer.shutdown().await;
}
both!(publish_consume_ack);

async fn retried_then_dead_lettered(backend: Backend) {
    let bus = bus(backend).await;
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let seen = attempts.clone();
    let consumer = bus
        .subscribe(
            Subscription::new("dlq")
                .bind("#")
                .retries(2, Duration::from_millis(50)),
            handler_fn(move |d| {
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().push(d.attempt);
                    Err(HandlerError::Retry("downstream is down".into()))
                }
            }),
        )
        .await
        .unwrap();
    let e = event("ten_a", "identity", "tenant.created", 1);
    bus.publish(&e).await.unwrap();
    let dead = wait_dead_letters(bus.as_ref(), "dlq", 1).await;
    assert_eq!(dead[0].event.id, e.id);
    assert_eq!(dead[0].attempt, 2);
    assert!(
        dead[0]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("downstream is down")
    );
    assert_eq!(
        *attempts.lock().unwrap(),
        vec![0, 1, 2],
        "first try + 2 retries"
    );
    consumer.shutdown().await;
}
both!(retried_then_dead_lettered);

async fn retry_recovers(backend: Backend) {
    let bus = bus(backend).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let failed_once = Arc::new(Mutex::new(false));
    let consumer = bus
        .subscribe(
            Subscription::new("recover")
                .bind("#")
                .retries(3, Duration::from_millis(50)),
            handler_fn(move |d| {
                let tx = tx.clone();
                let failed_once = failed_once.clone();
                async move {
                    let first = !std::mem::replace(&mut *failed_once.lock().unwrap(), true);
                    if first {
                        return Err(HandlerError::Retry("transient".into()));
                    }
                    tx.send(d).unwrap();
                    Ok(())
                }
            }),
        )
        .await
        .unwrap();
    let e = event("ten_a", "ledger", "appended", 1);
    bus.publish(&e).await.unwrap();
    let got = recv_n(&mut rx, 1).await;
    assert_eq!(got[0].event.id, e.id);
    assert_eq!(got[0].attempt, 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        bus.take_dead_letters("recover", 10)
            .await
            .unwrap()
            .is_empty()
    );
    consumer.shutdown().await;
}
both!(retry_recovers);

async fn rejected_goes_straight_to_dlq(backend: Backend) {
    let bus = bus(backend).await;
    let calls = Arc::new(Mutex::new(0));
    let counter = calls.clone();
    let consumer = bus
        .subscribe(
            Subscription::new("reject")
                .bind("#")
                .retries(5, Duration::from_millis(50)),
            handler_fn(move |_| {
                let counter = counter.clone();
                async move {
                    *counter.lock().unwrap() += 1;
                    Err(HandlerError::Reject("schema mismatch".into()))
                }
            }),
        )
        .await
        .unwrap();
    bus.publish(&event("ten_a", "audit", "x", 1)).await.unwrap();
    let dead = wait_dead_letters(bus.as_ref(), "reject", 1).await;
    assert_eq!(dead[0].attempt, 0);
    assert_eq!(*calls.lock().unwrap(), 1, "not retried");
    consumer.shutdown().await;
}
both!(rejected_goes_straight_to_dlq);

async fn rpc_reply_and_remote_error(backend: Backend) {
    let bus = bus(backend).await;
    let server = bus
        .serve(
            "echo",
            rpc_fn(|req| async move {
                match req.method.as_str() {
                    "echo" => Ok(serde_json::json!({ "echo": req.body })),
                    _ => Err(RemoteError::new("unknown_method", req.method)),
                }
            }),
        )
        .await
        .unwrap();
    let body = serde_json::json!({ "hello": "world" });
    let reply = bus
        .call(
            "echo",
            RpcRequest::new("echo", &body).unwrap(),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(reply, serde_json::json!({ "echo": body }));
    // Concurrent calls are matched to their own replies by correlation id.
    let calls = (0..20).map(|i| {
        let bus = bus.clone();
        async move {
            let r = bus
                .call(
                    "echo",
                    RpcRequest::new("echo", &i).unwrap(),
                    Duration::from_secs(10),
                )
                .await
                .unwrap();
            assert_eq!(r, serde_json::json!({ "echo": i }));
        }
    });
    futures::future::join_all(calls).await;
    let err = bus
        .call(
            "echo",
            RpcRequest::new("nope", &()).unwrap(),
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, BusError::Remote(e) if e.code == "unknown_method"),
        "{err:?}"
    );
    server.shutdown().await;
}
both!(rpc_reply_and_remote_error);

async fn rpc_timeout(backend: Backend) {
    let bus = bus(backend).await;
    // A service no replica serves yet: refused at once, not after the caller's timeout.
    let started = std::time::Instant::now();
    let err = bus
        .call(
            "nobody-serves-this",
            RpcRequest::new("x", &()).unwrap(),
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, BusError::Unavailable(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let server = bus
        .serve(
            "slow",
            rpc_fn(|_| async {
                tokio::time::sleep(Duration::from_secs(2)).await;
                Ok(serde_json::Value::Null)
            }),
        )
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let err = bus
        .call(
            "slow",
            RpcRequest::new("x", &()).unwrap(),
            Duration::from_millis(300),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, BusError::Timeout(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "timed out before the reply"
    );
    server.shutdown().await;
}
both!(rpc_timeout);

fn trace_id(headers: &HashMap<String, String>) -> Option<String> {
    headers
        .get("traceparent")
        .and_then(|v| caretrail_platform::trace_context::parse_traceparent(v))
        .map(|(trace, _)| trace)
}

async fn trace_context_survives_a_hop(backend: Backend) {
    use tracing::Instrument;
    let bus = bus(backend).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let consumer = bus
        .subscribe(
            Subscription::new("trace").bind("#"),
            handler_fn(move |_d| {
                let tx = tx.clone();
                async move {
                    // The consumer's span continues the producer's trace.
                    tx.send(caretrail_platform::trace_context::current_headers())
                        .unwrap();
                    Ok(())
                }
            }),
        )
        .await
        .unwrap();
    let span = tracing::info_span!("producer");
    let (sent_trace, _) = async {
        let e = event("ten_a", "identity", "traced", 1);
        bus.publish(&e).await.unwrap();
        (trace_id(&e.trace), ())
    }
    .instrument(span)
    .await;
    let sent_trace = sent_trace.expect("the producer's trace context is captured");
    let consumer_headers = tokio::time::timeout(Duration::from_secs(15), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(trace_id(&consumer_headers), Some(sent_trace));
    // And across RPC.
    let server = bus
        .serve(
            "traced",
            rpc_fn(|_| async {
                Ok(
                    serde_json::to_value(caretrail_platform::trace_context::current_headers())
                        .unwrap(),
                )
            }),
        )
        .await
        .unwrap();
    let span = tracing::info_span!("caller");
    let (reply, caller_trace) = async {
        let req = RpcRequest::new("x", &()).unwrap();
        let t = trace_id(&req.trace);
        (
            bus.call("traced", req, Duration::from_secs(10))
                .await
                .unwrap(),
            t,
        )
    }
    .instrument(span)
    .await;
    let served: HashMap<String, String> = serde_json::from_value(reply).unwrap();
    assert_eq!(trace_id(&served), caller_trace);
    assert!(caller_trace.is_some());
    server.shutdown().await;
    consumer.shutdown().await;
}
both!(trace_context_survives_a_hop);

// ---- outbox + inbox ----

async fn database(backend: Backend) -> (DatabaseConnection, Option<tempfile::TempDir>) {
    let (settings, dir) = match backend {
        Backend::InProcess => {
            let (s, d) = caretrail_db::testing::fresh_sqlite();
            (s, Some(d))
        }
        Backend::Rabbit => (
            caretrail_db::testing::fresh_postgres(Some("bus_test")).await,
            None,
        ),
    };
    let db =
        caretrail_db::connect_and_migrate::<caretrail_migrations::identity::Migrator>(&settings)
            .await
            .unwrap();
    (db, dir)
}

/// A consumer that applies each message once: inbox claim + effect in one transaction.
fn exactly_once_consumer(
    db: DatabaseConnection,
    processed: Arc<Mutex<HashMap<Uuid, u32>>>,
) -> Arc<dyn caretrail_bus::EventHandler> {
    handler_fn(move |d: Delivery| {
        let db = db.clone();
        let processed = processed.clone();
        async move {
            let txn = db
                .begin()
                .await
                .map_err(|e| HandlerError::Retry(e.to_string()))?;
            let fresh = inbox::claim(&txn, "test-consumer", d.event.id)
                .await
                .map_err(|e| HandlerError::Retry(e.to_string()))?;
            txn.commit()
                .await
                .map_err(|e| HandlerError::Retry(e.to_string()))?;
            if fresh {
                *processed.lock().unwrap().entry(d.event.id).or_default() += 1;
            }
            Ok(())
        }
    })
}

async fn wait_processed(processed: &Arc<Mutex<HashMap<Uuid, u32>>>, n: usize, within: Duration) {
    let deadline = std::time::Instant::now() + within;
    while processed.lock().unwrap().len() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of {n} events processed",
            processed.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn outbox_relay_delivers_exactly_once(backend: Backend) {
    let bus = bus(backend).await;
    let (db, _dir) = database(backend).await;
    let processed = Arc::new(Mutex::new(HashMap::new()));
    let consumer = bus
        .subscribe(
            Subscription::new("outbox").bind("#"),
            exactly_once_consumer(db.clone(), processed.clone()),
        )
        .await
        .unwrap();
    // Committed events are published; rolled-back ones are not.
    let mut committed = Vec::new();
    for i in 0..25 {
        let e = event("ten_a", "identity", "thing.happened", i);
        let txn = db.begin().await.unwrap();
        outbox::enqueue(&txn, &e).await.unwrap();
        if i % 5 == 4 {
            txn.rollback().await.unwrap();
        } else {
            txn.commit().await.unwrap();
            committed.push(e.id);
        }
    }
    let relay =
        outbox::Relay::new(db.clone(), bus.clone()).poll_interval(Duration::from_millis(50));
    let cancel = tokio_util::sync::CancellationToken::new();
    let task = relay.spawn(cancel.clone());
    wait_processed(&processed, committed.len(), Duration::from_secs(20)).await;
    // A duplicate delivery (e.g. a publish whose confirm was lost) changes nothing.
    let dup_row = caretrail_bus::Event {
        ..event("ten_a", "identity", "dup", 0)
    };
    let mut dup = dup_row.clone();
    dup.id = committed[0];
    bus.publish(&dup).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let processed = processed.lock().unwrap().clone();
    assert_eq!(processed.len(), committed.len());
    for id in &committed {
        assert_eq!(
            processed.get(id),
            Some(&1),
            "event {id} processed exactly once"
        );
    }
    assert_eq!(outbox::pending_count(&db).await.unwrap(), 0);
    cancel.cancel();
    task.await.unwrap();
    consumer.shutdown().await;
}
both!(outbox_relay_delivers_exactly_once);

// ---- broker restart (real broker only; run on its own: it stops RabbitMQ) ----

fn rabbitmqctl(args: &[&str]) {
    let status = std::process::Command::new("rabbitmqctl")
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("rabbitmqctl must be on PATH for the broker restart test");
    assert!(status.success(), "rabbitmqctl {args:?} failed");
}

/// Starts the broker app again even if the test fails half-way.
struct RestartGuard;
impl Drop for RestartGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl")
            .arg("start_app")
            .status();
    }
}

#[tokio::test]
async fn broker_restart_loses_nothing_and_duplicates_nothing() {
    let bus = bus(Backend::Rabbit).await;
    let (db, _dir) = database(Backend::Rabbit).await;
    let processed = Arc::new(Mutex::new(HashMap::new()));
    let consumer = bus
        .subscribe(
            Subscription::new("restart").bind("#"),
            exactly_once_consumer(db.clone(), processed.clone()),
        )
        .await
        .unwrap();
    let relay =
        outbox::Relay::new(db.clone(), bus.clone()).poll_interval(Duration::from_millis(50));
    let notify = relay.notifier();
    let cancel = tokio_util::sync::CancellationToken::new();
    let task = relay.spawn(cancel.clone());

    let mut committed = Vec::new();
    let commit = |i: u32| {
        let db = db.clone();
        let notify = notify.clone();
        async move {
            let e = event("ten_a", "identity", "restart", i);
            let txn = db.begin().await.unwrap();
            outbox::enqueue(&txn, &e).await.unwrap();
            txn.commit().await.unwrap();
            notify.notify_one();
            e.id
        }
    };
    for i in 0..10 {
        committed.push(commit(i).await);
    }
    wait_processed(&processed, 10, Duration::from_secs(20)).await;

    let guard = RestartGuard;
    rabbitmqctl(&["stop_app"]);
    for i in 10..30 {
        committed.push(commit(i).await);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        outbox::pending_count(&db).await.unwrap() > 0,
        "nothing can be published while the broker is down"
    );
    rabbitmqctl(&["start_app"]);
    drop(guard);

    wait_processed(&processed, 30, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let processed = processed.lock().unwrap().clone();
    assert_eq!(processed.len(), 30, "none lost");
    for id in &committed {
        assert_eq!(
            processed.get(id),
            Some(&1),
            "event {id} processed exactly once"
        );
    }
    cancel.cancel();
    task.await.unwrap();
    consumer.shutdown().await;
}
