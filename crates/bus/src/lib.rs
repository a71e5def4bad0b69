//! The message bus every service uses: versioned domain events on a topic exchange
//! (routing key `<tenant>.<service>.<event>`), consumers with explicit ack, bounded retries
//! with backoff and a dead-letter queue, and request/reply RPC with correlation ids and
//! timeouts. Two adapters with the same semantics: RabbitMQ (lapin) and in-process.
//!
//! Producers write events through the transactional [`outbox`]; consumers deduplicate
//! with the [`inbox`]. Trace context travels in every message.

use std::{collections::HashMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub mod inbox;
pub mod inprocess;
pub mod outbox;
pub mod rabbitmq;
mod topic;

pub use inprocess::InProcessBus;
pub use rabbitmq::RabbitBus;
pub use topic::topic_matches;

/// Tenant value of events that belong to the platform rather than one tenant.
pub const PLATFORM_TENANT: &str = "platform";

/// A domain event as it travels: envelope + JSON payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Message id; consumers deduplicate on it.
    pub id: Uuid,
    pub tenant: String,
    /// Producing service, e.g. `identity`.
    pub service: String,
    /// Event name, e.g. `tenant.created`.
    pub name: String,
    pub version: u16,
    pub occurred_at: DateTime<Utc>,
    pub payload: serde_json::Value,
    /// W3C trace context of the producer.
    #[serde(default)]
    pub trace: HashMap<String, String>,
}

impl Event {
    /// A new event stamped now, carrying the current trace context.
    pub fn new(
        tenant: impl Into<String>,
        service: impl Into<String>,
        name: impl Into<String>,
        version: u16,
        payload: &impl Serialize,
    ) -> Result<Self, BusError> {
        Ok(Self {
            id: Uuid::now_v7(),
            tenant: tenant.into(),
            service: service.into(),
            name: name.into(),
            version,
            occurred_at: Utc::now(),
            payload: serde_json::to_value(payload).map_err(BusError::Serialization)?,
            trace: caretrail_platform::trace_context::current_headers(),
        })
    }

    pub fn routing_key(&self) -> String {
        format!("{}.{}.{}", self.tenant, self.service, self.name)
    }

    /// Versioned type name, e.g. `identity.tenant.created.v1`.
    pub fn event_type(&self) -> String {
        format!("{}.{}.v{}", self.service, self.name, self.version)
    }

    pub fn payload_as<T: DeserializeOwned>(&self) -> Result<T, BusError> {
        serde_json::from_value(self.payload.clone()).map_err(BusError::Serialization)
    }
}

/// An event handed to a consumer.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub event: Event,
    /// 0 on first delivery, then 1, 2, … on retries.
    pub attempt: u32,
    /// Why it was dead-lettered (only on dead letters).
    pub error: Option<String>,
}

/// What a handler tells the bus about a message it could not process.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HandlerError {
    /// Try again later (with backoff), up to the subscription's retry limit.
    #[error("transient failure: {0}")]
    Retry(String),
    /// Never going to work: dead-letter it now.
    #[error("permanent failure: {0}")]
    Reject(String),
}

#[async_trait]
pub trait EventHandler: Send + Sync + 'static {
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError>;
}

/// Adapts an async closure into an [`EventHandler`].
pub fn handler_fn<F, Fut>(f: F) -> Arc<dyn EventHandler>
where
    F: Fn(Delivery) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    struct FnHandler<F>(F);
    #[async_trait]
    impl<F, Fut> EventHandler for FnHandler<F>
    where
        F: Fn(Delivery) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
            (self.0)(delivery.clone()).await
        }
    }
    Arc::new(FnHandler(f))
}

/// A durable queue bound to the events exchange.
#[derive(Debug, Clone)]
pub struct Subscription {
    /// Logical queue name, e.g. `audit.all-events`; the adapter adds its prefix.
    pub queue: String,
    /// Topic patterns (`*` one word, `#` zero or more), e.g. `*.identity.#`.
    pub bindings: Vec<String>,
    /// Retries after the first attempt before the message is dead-lettered.
    pub max_retries: u32,
    /// Delay before the first retry; doubles each time.
    pub retry_delay: Duration,
    /// Unacknowledged messages in flight per consumer.
    pub prefetch: u16,
    /// A queue of this consumer alone that disappears with it (fan-out to every replica,
    /// e.g. cache invalidations). No retry or dead-letter queue.
    pub ephemeral: bool,
    /// Runs each time the consumer has (re)declared its queue and consumes again: what was
    /// published while an ephemeral queue did not exist is lost, so a consumer that must
    /// not miss anything catches up here ([`Subscription::on_consuming`]).
    pub on_consuming: Option<ConsumingHook>,
}

/// See [`Subscription::on_consuming`].
#[derive(Clone)]
pub struct ConsumingHook(Arc<dyn Fn() -> futures::future::BoxFuture<'static, ()> + Send + Sync>);

impl ConsumingHook {
    pub(crate) async fn run(&self) {
        (self.0)().await
    }
}

impl std::fmt::Debug for ConsumingHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConsumingHook")
    }
}

impl Subscription {
    pub fn new(queue: impl Into<String>) -> Self {
        Self {
            queue: queue.into(),
            bindings: Vec::new(),
            max_retries: 5,
            retry_delay: Duration::from_millis(500),
            prefetch: 16,
            ephemeral: false,
            on_consuming: None,
        }
    }

    /// Runs `hook` whenever the consumer starts consuming: at subscription and after every
    /// reconnection to the broker, once the queue exists again (so nothing published from
    /// then on is missed while the hook catches up on what came before).
    pub fn on_consuming<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        self.on_consuming = Some(ConsumingHook(Arc::new(move || Box::pin(hook()))));
        self
    }

    pub fn ephemeral(mut self) -> Self {
        self.ephemeral = true;
        self
    }

    pub fn bind(mut self, pattern: impl Into<String>) -> Self {
        self.bindings.push(pattern.into());
        self
    }

    pub fn retries(mut self, max_retries: u32, first_delay: Duration) -> Self {
        self.max_retries = max_retries;
        self.retry_delay = first_delay;
        self
    }

    pub fn prefetch(mut self, prefetch: u16) -> Self {
        self.prefetch = prefetch.max(1);
        self
    }

    /// Backoff before retry number `attempt` (1-based), capped at a minute.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
        self.retry_delay
            .saturating_mul(factor)
            .min(Duration::from_secs(60))
    }
}

/// A request to a service over the bus.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RpcRequest {
    pub method: String,
    pub body: serde_json::Value,
    #[serde(default)]
    pub trace: HashMap<String, String>,
}

impl RpcRequest {
    pub fn new(method: impl Into<String>, body: &impl Serialize) -> Result<Self, BusError> {
        Ok(Self {
            method: method.into(),
            body: serde_json::to_value(body).map_err(BusError::Serialization)?,
            trace: caretrail_platform::trace_context::current_headers(),
        })
    }
}

/// An error the remote handler chose to return (as opposed to a transport failure).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct RemoteError {
    pub code: String,
    pub message: String,
}

impl RemoteError {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// Wire form of an RPC reply.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RpcReply {
    Ok(serde_json::Value),
    Err(RemoteError),
}

#[async_trait]
pub trait RpcHandler: Send + Sync + 'static {
    async fn handle(&self, request: RpcRequest) -> Result<serde_json::Value, RemoteError>;
}

/// Adapts an async closure into an [`RpcHandler`].
pub fn rpc_fn<F, Fut>(f: F) -> Arc<dyn RpcHandler>
where
    F: Fn(RpcRequest) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<serde_json::Value, RemoteError>> + Send + 'static,
{
    struct FnRpc<F>(F);
    #[async_trait]
    impl<F, Fut> RpcHandler for FnRpc<F>
    where
        F: Fn(RpcRequest) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<serde_json::Value, RemoteError>> + Send + 'static,
    {
        async fn handle(&self, request: RpcRequest) -> Result<serde_json::Value, RemoteError> {
            (self.0)(request).await
        }
    }
    Arc::new(FnRpc(f))
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("message bus unavailable: {0}")]
    Unavailable(String),
    #[error("the broker refused the message")]
    Nacked,
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    #[error("remote error: {0}")]
    Remote(#[from] RemoteError),
    #[error("(de)serialisation failed")]
    Serialization(#[source] serde_json::Error),
    #[error("invalid bus configuration: {0}")]
    Config(String),
}

impl From<lapin::Error> for BusError {
    fn from(e: lapin::Error) -> Self {
        BusError::Unavailable(e.to_string())
    }
}

/// A running consumer (event subscription or RPC server).
pub struct ConsumerHandle {
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl ConsumerHandle {
    pub(crate) fn new(cancel: CancellationToken, task: JoinHandle<()>) -> Self {
        Self { cancel, task }
    }

    /// Stops taking new messages and waits for the one in hand to finish.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        if let Err(error) = self.task.await {
            tracing::warn!(%error, "consumer task ended abnormally");
        }
    }
}

#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Publishes an event; returns once the broker has confirmed it (durably stored).
    async fn publish(&self, event: &Event) -> Result<(), BusError>;

    /// Declares the subscription's queue and bindings and starts consuming.
    async fn subscribe(
        &self,
        subscription: Subscription,
        handler: Arc<dyn EventHandler>,
    ) -> Result<ConsumerHandle, BusError>;

    /// Sends `request` to `service` and waits for its reply: `Timeout` when no reply came in
    /// time, `Unavailable` at once when no replica has ever served the service.
    async fn call(
        &self,
        service: &str,
        request: RpcRequest,
        timeout: Duration,
    ) -> Result<serde_json::Value, BusError>;

    /// Serves RPC requests addressed to `service`.
    async fn serve(
        &self,
        service: &str,
        handler: Arc<dyn RpcHandler>,
    ) -> Result<ConsumerHandle, BusError>;

    /// Removes and returns up to `max` dead letters of a subscription's queue.
    async fn take_dead_letters(&self, queue: &str, max: usize) -> Result<Vec<Delivery>, BusError>;

    /// Cheap reachability check for readiness probes.
    async fn ping(&self) -> Result<(), BusError>;
}

/// Typed convenience on top of [`Bus::call`].
pub async fn call_json<Req: Serialize, Resp: DeserializeOwned>(
    bus: &dyn Bus,
    service: &str,
    method: &str,
    body: &Req,
    timeout: Duration,
) -> Result<Resp, BusError> {
    let value = bus
        .call(service, RpcRequest::new(method, body)?, timeout)
        .await?;
    serde_json::from_value(value).map_err(BusError::Serialization)
}

/// Bus settings shared by every service.
#[derive(Debug, Clone, Deserialize)]
pub struct BusSettings {
    /// `inprocess` (embedded default) or `amqp://user:pass@host:5672/%2f`.
    #[serde(default = "default_bus_url")]
    pub bus_url: secrecy::SecretString,
    /// Prefix of exchange and queue names: one per deployment (and per test).
    #[serde(default = "default_bus_prefix")]
    pub bus_prefix: String,
    /// Main queues as quorum queues (replicated; recommended on a RabbitMQ cluster).
    #[serde(default)]
    pub bus_quorum_queues: bool,
}

fn default_bus_url() -> secrecy::SecretString {
    secrecy::SecretString::from("inprocess")
}
fn default_bus_prefix() -> String {
    "caretrail".into()
}

impl Default for BusSettings {
    fn default() -> Self {
        Self {
            bus_url: default_bus_url(),
            bus_prefix: default_bus_prefix(),
            bus_quorum_queues: false,
        }
    }
}

impl BusSettings {
    pub fn is_inprocess(&self) -> bool {
        use secrecy::ExposeSecret;
        self.bus_url.expose_secret() == "inprocess"
    }

    pub fn validate(&self) -> Result<(), BusError> {
        use secrecy::ExposeSecret;
        let url = self.bus_url.expose_secret();
        if !(url == "inprocess" || url.starts_with("amqp://") || url.starts_with("amqps://")) {
            return Err(BusError::Config(
                "bus_url must be `inprocess` or an amqp(s):// URL".into(),
            ));
        }
        if self.bus_prefix.is_empty()
            || !self
                .bus_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(BusError::Config(
                "bus_prefix must be non-empty [A-Za-z0-9_-]".into(),
            ));
        }
        Ok(())
    }
}

/// Opens the configured bus. `inprocess` buses are shared per prefix within the process,
/// which is how the all-in-one binary's services reach each other.
pub async fn connect(settings: &BusSettings) -> Result<Arc<dyn Bus>, BusError> {
    use secrecy::ExposeSecret;
    settings.validate()?;
    if settings.is_inprocess() {
        Ok(Arc::new(InProcessBus::shared(&settings.bus_prefix)))
    } else {
        let bus = RabbitBus::connect(
            settings.bus_url.expose_secret(),
            &settings.bus_prefix,
            settings.bus_quorum_queues,
        )
        .await?;
        Ok(Arc::new(bus))
    }
}

/// Runs `handler` for one delivery inside a span linked to the producer's trace.
pub(crate) async fn dispatch(
    handler: &Arc<dyn EventHandler>,
    delivery: &Delivery,
) -> Result<(), HandlerError> {
    use tracing::Instrument;
    let span = tracing::info_span!(
        "bus.consume",
        otel.name = %format!("consume {}", delivery.event.event_type()),
        message_id = %delivery.event.id,
        tenant = %delivery.event.tenant,
        attempt = delivery.attempt,
    );
    caretrail_platform::trace_context::set_parent_from(&span, &delivery.event.trace);
    handler.handle(delivery).instrument(span).await
}

pub(crate) async fn dispatch_rpc(
    handler: &Arc<dyn RpcHandler>,
    request: RpcRequest,
) -> Result<serde_json::Value, RemoteError> {
    use tracing::Instrument;
    let span = tracing::info_span!("bus.rpc.serve", otel.name = %format!("rpc {}", request.method));
    caretrail_platform::trace_context::set_parent_from(&span, &request.trace);
    handler.handle(request).instrument(span).await
}
