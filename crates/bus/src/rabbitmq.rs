//! RabbitMQ adapter (lapin).
//!
//! Topology per prefix `P`: a durable topic exchange `P.events`; per subscription `Q` a
//! durable queue `P.Q` (quorum if configured) bound to it, a retry queue `P.Q.retry` whose
//! messages expire after the backoff and dead-letter back into `P.Q`, and a dead-letter queue
//! `P.Q.dlq`. RPC requests go to `P.rpc.<service>` with direct reply-to.
//!
//! Publishes wait for publisher confirms. Connections and channels are re-established on
//! demand, and consumers resubscribe with backoff, so a broker restart costs latency, not
//! messages (unconfirmed publishes fail and the outbox relay retries them).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use futures::StreamExt;
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
    message::Delivery as AmqpDelivery,
    options::{
        BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicGetOptions,
        BasicNackOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
        ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    },
    types::{AMQPValue, FieldTable},
};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    Bus, BusError, ConsumerHandle, Delivery, Event, EventHandler, HandlerError, RemoteError,
    RpcHandler, RpcReply, RpcRequest, Subscription,
};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);
const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";
const ATTEMPT_HEADER: &str = "x-attempt";
const ERROR_HEADER: &str = "x-error";
const RPC_CONCURRENCY: u16 = 64;

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<RpcReply>>>>;

struct Shared {
    uri: String,
    prefix: String,
    quorum: bool,
    connection: tokio::sync::Mutex<Option<Arc<Connection>>>,
    publisher: tokio::sync::Mutex<Option<Channel>>,
    rpc_client: tokio::sync::Mutex<Option<Channel>>,
    pending: Pending,
}

/// Cloning shares the connection.
#[derive(Clone)]
pub struct RabbitBus {
    shared: Arc<Shared>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl RabbitBus {
    /// Connects (failing fast if the broker is unreachable) and declares the exchange.
    pub async fn connect(uri: &str, prefix: &str, quorum: bool) -> Result<Self, BusError> {
        let bus = Self {
            shared: Arc::new(Shared {
                uri: uri.to_string(),
                prefix: prefix.to_string(),
                quorum,
                connection: tokio::sync::Mutex::new(None),
                publisher: tokio::sync::Mutex::new(None),
                rpc_client: tokio::sync::Mutex::new(None),
                pending: Arc::default(),
            }),
        };
        bus.publisher().await?;
        Ok(bus)
    }

    fn exchange(&self) -> String {
        format!("{}.events", self.shared.prefix)
    }

    fn queue_name(&self, queue: &str) -> String {
        format!("{}.{queue}", self.shared.prefix)
    }

    fn rpc_queue(&self, service: &str) -> String {
        format!("{}.rpc.{service}", self.shared.prefix)
    }

    async fn connection(&self) -> Result<Arc<Connection>, BusError> {
        let mut guard = self.shared.connection.lock().await;
        if let Some(conn) = guard.as_ref()
            && conn.status().connected()
        {
            return Ok(conn.clone());
        }
        let props = ConnectionProperties::default().with_connection_name("caretrail".into());
        let conn = tokio::time::timeout(
            CONNECT_TIMEOUT,
            Connection::connect(&self.shared.uri, props),
        )
        .await
        .map_err(|_| BusError::Unavailable("connecting to RabbitMQ timed out".into()))??;
        let conn = Arc::new(conn);
        *guard = Some(conn.clone());
        Ok(conn)
    }

    async fn channel(&self) -> Result<Channel, BusError> {
        let conn = self.connection().await?;
        let channel = conn.create_channel().await?;
        channel
            .exchange_declare(
                self.exchange().as_str().into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        Ok(channel)
    }

    async fn publisher(&self) -> Result<Channel, BusError> {
        let mut guard = self.shared.publisher.lock().await;
        if let Some(ch) = guard.as_ref()
            && ch.status().connected()
        {
            return Ok(ch.clone());
        }
        let ch = self.channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        *guard = Some(ch.clone());
        Ok(ch)
    }

    async fn forget_publisher(&self) {
        *self.shared.publisher.lock().await = None;
    }

    async fn declare_subscription(&self, ch: &Channel, sub: &Subscription) -> Result<(), BusError> {
        let main = self.queue_name(&sub.queue);
        if sub.ephemeral {
            let options = QueueDeclareOptions {
                durable: false,
                auto_delete: true,
                ..Default::default()
            };
            ch.queue_declare(main.as_str().into(), options, FieldTable::default())
                .await?;
            return self.bind(ch, &main, sub).await;
        }
        let mut main_args = FieldTable::default();
        if self.shared.quorum {
            main_args.insert(
                "x-queue-type".into(),
                AMQPValue::LongString("quorum".into()),
            );
        }
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        ch.queue_declare(main.as_str().into(), durable, main_args)
            .await?;
        let mut retry_args = FieldTable::default();
        retry_args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString("".into()),
        );
        retry_args.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(main.as_str().into()),
        );
        ch.queue_declare(format!("{main}.retry").as_str().into(), durable, retry_args)
            .await?;
        ch.queue_declare(
            format!("{main}.dlq").as_str().into(),
            durable,
            FieldTable::default(),
        )
        .await?;
        self.bind(ch, &main, sub).await
    }

    async fn bind(&self, ch: &Channel, queue: &str, sub: &Subscription) -> Result<(), BusError> {
        for binding in &sub.bindings {
            ch.queue_bind(
                queue.into(),
                self.exchange().as_str().into(),
                binding.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        }
        Ok(())
    }

    /// One consuming session; returns Ok when cancelled, Err when the channel broke.
    async fn consume_session(
        &self,
        sub: &Subscription,
        handler: &Arc<dyn EventHandler>,
        cancel: &CancellationToken,
    ) -> Result<(), BusError> {
        let ch = self.channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        ch.basic_qos(sub.prefetch, BasicQosOptions::default())
            .await?;
        self.declare_subscription(&ch, sub).await?;
        let main = self.queue_name(&sub.queue);
        let mut consumer = ch
            .basic_consume(
                main.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        tracing::debug!(queue = %main, "consuming");
        if let Some(hook) = &sub.on_consuming {
            hook.run().await;
        }
        loop {
            let next = tokio::select! {
                biased;
                _ = cancel.cancelled() => {
                    let tag = consumer.tag();
                    let _ = ch.basic_cancel(tag, BasicCancelOptions::default()).await;
                    let _ = ch.close(200, "consumer stopped".into()).await;
                    return Ok(());
                }
                next = consumer.next() => next,
            };
            match next {
                None => return Err(BusError::Unavailable("consumer stream ended".into())),
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(delivery)) => self.process(&ch, sub, handler, delivery).await?,
            }
        }
    }

    async fn process(
        &self,
        ch: &Channel,
        sub: &Subscription,
        handler: &Arc<dyn EventHandler>,
        raw: AmqpDelivery,
    ) -> Result<(), BusError> {
        let main = self.queue_name(&sub.queue);
        let attempt = header_u32(&raw.properties, ATTEMPT_HEADER).unwrap_or(0);
        let event: Event = match serde_json::from_slice(&raw.data) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(queue = %main, error = %e, "undecodable message, dead-lettering");
                self.republish(
                    ch,
                    &format!("{main}.dlq"),
                    &raw.data,
                    attempt,
                    None,
                    Some(&e.to_string()),
                )
                .await?;
                raw.ack(BasicAckOptions::default()).await?;
                return Ok(());
            }
        };
        let delivery = Delivery {
            event,
            attempt,
            error: None,
        };
        let outcome = crate::dispatch(handler, &delivery).await;
        let result = match outcome {
            Ok(()) => Ok(()),
            Err(e) if sub.ephemeral => {
                tracing::warn!(message_id = %delivery.event.id, error = %e, "dropping message of an ephemeral subscription");
                Ok(())
            }
            Err(HandlerError::Retry(reason)) if attempt < sub.max_retries => {
                let next = attempt + 1;
                let delay = sub.backoff(next);
                tracing::warn!(message_id = %delivery.event.id, attempt = next, ?delay, %reason, "retrying message");
                self.republish(
                    ch,
                    &format!("{main}.retry"),
                    &raw.data,
                    next,
                    Some(delay),
                    None,
                )
                .await
            }
            Err(e) => {
                tracing::error!(message_id = %delivery.event.id, error = %e, "dead-lettering message");
                self.republish(
                    ch,
                    &format!("{main}.dlq"),
                    &raw.data,
                    attempt,
                    None,
                    Some(&e.to_string()),
                )
                .await
            }
        };
        match result {
            Ok(()) => {
                raw.ack(BasicAckOptions::default()).await?;
                Ok(())
            }
            Err(e) => {
                // Could not park it: hand it back so it is redelivered, then reconnect.
                let _ = raw
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..Default::default()
                    })
                    .await;
                Err(e)
            }
        }
    }

    async fn republish(
        &self,
        ch: &Channel,
        queue: &str,
        body: &[u8],
        attempt: u32,
        expiration: Option<Duration>,
        error: Option<&str>,
    ) -> Result<(), BusError> {
        let mut headers = FieldTable::default();
        headers.insert(
            ATTEMPT_HEADER.into(),
            AMQPValue::LongLongInt(i64::from(attempt)),
        );
        if let Some(error) = error {
            headers.insert(ERROR_HEADER.into(), AMQPValue::LongString(error.into()));
        }
        let mut props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_headers(headers);
        if let Some(delay) = expiration {
            props = props.with_expiration(delay.as_millis().to_string().as_str().into());
        }
        let confirm = ch
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                body,
                props,
            )
            .await?;
        match tokio::time::timeout(CONFIRM_TIMEOUT, confirm).await {
            Ok(Ok(Confirmation::Nack(_))) => Err(BusError::Nacked),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(BusError::Unavailable("publisher confirm timed out".into())),
        }
    }

    async fn declare_rpc_queue(&self, ch: &Channel, service: &str) -> Result<String, BusError> {
        let queue = self.rpc_queue(service);
        ch.queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
        Ok(queue)
    }

    async fn rpc_channel(&self) -> Result<Channel, BusError> {
        let mut guard = self.shared.rpc_client.lock().await;
        if let Some(ch) = guard.as_ref()
            && ch.status().connected()
        {
            return Ok(ch.clone());
        }
        let ch = self.connection().await?.create_channel().await?;
        // Confirms carry back requests the broker could not route (mandatory publishes).
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        let mut replies = ch
            .basic_consume(
                DIRECT_REPLY_TO.into(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        let pending = self.shared.pending.clone();
        tokio::spawn(async move {
            while let Some(Ok(delivery)) = replies.next().await {
                let Some(corr) = delivery.properties.correlation_id().as_ref() else {
                    continue;
                };
                let Some(waiter) = lock(&pending).remove(corr.as_str()) else {
                    continue; // the caller gave up (timeout)
                };
                let reply =
                    serde_json::from_slice::<RpcReply>(&delivery.data).unwrap_or_else(|e| {
                        RpcReply::Err(RemoteError::new("bad_reply", e.to_string()))
                    });
                let _ = waiter.send(reply);
            }
        });
        *guard = Some(ch.clone());
        Ok(ch)
    }

    async fn serve_session(
        &self,
        service: &str,
        handler: &Arc<dyn RpcHandler>,
        cancel: &CancellationToken,
    ) -> Result<(), BusError> {
        let ch = self.connection().await?.create_channel().await?;
        ch.basic_qos(RPC_CONCURRENCY, BasicQosOptions::default())
            .await?;
        let queue = self.declare_rpc_queue(&ch, service).await?;
        let mut consumer = ch
            .basic_consume(
                queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let mut in_flight = tokio::task::JoinSet::new();
        let result = loop {
            let next = tokio::select! {
                biased;
                _ = cancel.cancelled() => break Ok(()),
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => continue,
                next = consumer.next() => next,
            };
            let delivery = match next {
                None => break Err(BusError::Unavailable("rpc consumer ended".into())),
                Some(Err(e)) => break Err(e.into()),
                Some(Ok(d)) => d,
            };
            let handler = handler.clone();
            let ch = ch.clone();
            in_flight.spawn(async move {
                let reply = match serde_json::from_slice::<RpcRequest>(&delivery.data) {
                    Ok(request) => match crate::dispatch_rpc(&handler, request).await {
                        Ok(v) => RpcReply::Ok(v),
                        Err(e) => RpcReply::Err(e),
                    },
                    Err(e) => RpcReply::Err(RemoteError::new("bad_request", e.to_string())),
                };
                if let (Some(reply_to), Some(corr)) = (
                    delivery.properties.reply_to().clone(),
                    delivery.properties.correlation_id().clone(),
                ) && let Ok(body) = serde_json::to_vec(&reply)
                {
                    let props = BasicProperties::default()
                        .with_correlation_id(corr)
                        .with_content_type("application/json".into());
                    if let Err(error) = ch
                        .basic_publish(
                            "".into(),
                            reply_to,
                            BasicPublishOptions::default(),
                            &body,
                            props,
                        )
                        .await
                    {
                        tracing::warn!(%error, "could not send rpc reply");
                    }
                }
                let _ = delivery.ack(BasicAckOptions::default()).await;
            });
        };
        while in_flight.join_next().await.is_some() {}
        if result.is_ok() {
            let _ = ch.close(200, "rpc server stopped".into()).await;
        }
        result
    }
}

fn header_u32(props: &BasicProperties, name: &str) -> Option<u32> {
    let headers = props.headers().as_ref()?;
    let value = headers.inner().get(name)?;
    let n: i64 = match value {
        AMQPValue::LongLongInt(v) => *v,
        AMQPValue::LongInt(v) => i64::from(*v),
        AMQPValue::LongUInt(v) => i64::from(*v),
        AMQPValue::ShortInt(v) => i64::from(*v),
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok()?.parse().ok()?,
        _ => return None,
    };
    u32::try_from(n).ok()
}

/// Sleeps with exponential backoff unless cancelled; returns false when cancelled.
async fn backoff_sleep(cancel: &CancellationToken, failures: u32) -> bool {
    let delay = Duration::from_millis(200u64.saturating_mul(1 << failures.min(5)));
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}

#[async_trait]
impl Bus for RabbitBus {
    async fn publish(&self, event: &Event) -> Result<(), BusError> {
        let body = serde_json::to_vec(event).map_err(BusError::Serialization)?;
        let mut headers = FieldTable::default();
        headers.insert(
            "x-tenant".into(),
            AMQPValue::LongString(event.tenant.as_str().into()),
        );
        for (k, v) in &event.trace {
            headers.insert(k.as_str().into(), AMQPValue::LongString(v.as_str().into()));
        }
        let props = BasicProperties::default()
            .with_message_id(event.id.to_string().as_str().into())
            .with_type(event.event_type().as_str().into())
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_timestamp(u64::try_from(event.occurred_at.timestamp()).unwrap_or(0))
            .with_headers(headers);
        let ch = self.publisher().await?;
        let sent = ch
            .basic_publish(
                self.exchange().as_str().into(),
                event.routing_key().as_str().into(),
                BasicPublishOptions::default(),
                &body,
                props,
            )
            .await;
        let outcome = match sent {
            Ok(confirm) => match tokio::time::timeout(CONFIRM_TIMEOUT, confirm).await {
                Ok(Ok(Confirmation::Nack(_))) => Err(BusError::Nacked),
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(e.into()),
                Err(_) => Err(BusError::Unavailable("publisher confirm timed out".into())),
            },
            Err(e) => Err(e.into()),
        };
        if outcome.is_err() {
            self.forget_publisher().await;
        }
        outcome
    }

    async fn subscribe(
        &self,
        subscription: Subscription,
        handler: Arc<dyn EventHandler>,
    ) -> Result<ConsumerHandle, BusError> {
        // Declare now so events published after subscribe() returns are kept.
        let ch = self.channel().await?;
        self.declare_subscription(&ch, &subscription).await?;
        let _ = ch.close(200, "declared".into()).await;

        let cancel = CancellationToken::new();
        let token = cancel.clone();
        let bus = self.clone();
        let task = tokio::spawn(async move {
            let mut failures = 0u32;
            loop {
                match bus.consume_session(&subscription, &handler, &token).await {
                    Ok(()) => break,
                    Err(error) => {
                        if failures == 0 {
                            tracing::warn!(queue = %subscription.queue, %error, "consumer lost its channel; reconnecting");
                        }
                        failures = failures.saturating_add(1);
                        if !backoff_sleep(&token, failures).await {
                            break;
                        }
                    }
                }
            }
        });
        Ok(ConsumerHandle::new(cancel, task))
    }

    async fn call(
        &self,
        service: &str,
        request: RpcRequest,
        timeout: Duration,
    ) -> Result<serde_json::Value, BusError> {
        let body = serde_json::to_vec(&request).map_err(BusError::Serialization)?;
        let correlation = Uuid::new_v4().to_string();
        let (tx, rx) = oneshot::channel();
        lock(&self.shared.pending).insert(correlation.clone(), tx);
        let exchange = async {
            let ch = self.rpc_channel().await?;
            let props = BasicProperties::default()
                .with_correlation_id(correlation.as_str().into())
                .with_reply_to(DIRECT_REPLY_TO.into())
                .with_content_type("application/json".into())
                // A request nobody picks up in time is dropped rather than served late.
                .with_expiration(timeout.as_millis().to_string().as_str().into());
            // Mandatory: when no replica has declared the service's queue yet (services
            // starting together), the broker returns the request at once instead of
            // dropping it and leaving the caller to wait out its timeout.
            let published = ch
                .basic_publish(
                    "".into(),
                    self.rpc_queue(service).as_str().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    &body,
                    props,
                )
                .await;
            let confirmed = match published {
                Ok(confirm) => confirm.await,
                Err(e) => Err(e),
            };
            match confirmed {
                Ok(Confirmation::Ack(Some(_)) | Confirmation::Nack(Some(_))) => {
                    return Err(BusError::Unavailable(format!(
                        "no {service} replica serves requests yet"
                    )));
                }
                Ok(Confirmation::Nack(None)) => return Err(BusError::Nacked),
                Ok(_) => {}
                Err(e) => {
                    *self.shared.rpc_client.lock().await = None;
                    return Err(e.into());
                }
            }
            match rx.await {
                Ok(RpcReply::Ok(v)) => Ok(v),
                Ok(RpcReply::Err(e)) => Err(BusError::Remote(e)),
                Err(_) => Err(BusError::Unavailable("reply channel closed".into())),
            }
        };
        let result = match tokio::time::timeout(timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(BusError::Timeout(timeout)),
        };
        lock(&self.shared.pending).remove(&correlation);
        result
    }

    async fn serve(
        &self,
        service: &str,
        handler: Arc<dyn RpcHandler>,
    ) -> Result<ConsumerHandle, BusError> {
        let cancel = CancellationToken::new();
        let token = cancel.clone();
        let bus = self.clone();
        let service = service.to_string();
        // Declare now (failing fast if the broker is unreachable) so that requests sent
        // after serve() returns wait in the queue; later losses are retried.
        let ch = bus.connection().await?.create_channel().await?;
        bus.declare_rpc_queue(&ch, &service).await?;
        let _ = ch.close(200, "declared".into()).await;
        let task = tokio::spawn(async move {
            let mut failures = 0u32;
            loop {
                match bus.serve_session(&service, &handler, &token).await {
                    Ok(()) => break,
                    Err(error) => {
                        if failures == 0 {
                            tracing::warn!(%service, %error, "rpc server lost its channel; reconnecting");
                        }
                        failures = failures.saturating_add(1);
                        if !backoff_sleep(&token, failures).await {
                            break;
                        }
                    }
                }
            }
        });
        Ok(ConsumerHandle::new(cancel, task))
    }

    async fn take_dead_letters(&self, queue: &str, max: usize) -> Result<Vec<Delivery>, BusError> {
        let ch = self.channel().await?;
        let dlq = format!("{}.dlq", self.queue_name(queue));
        let mut out = Vec::new();
        while out.len() < max {
            let Some(msg) = ch
                .basic_get(dlq.as_str().into(), BasicGetOptions::default())
                .await?
            else {
                break;
            };
            let raw = msg.delivery;
            let error = raw
                .properties
                .headers()
                .as_ref()
                .and_then(|h| h.inner().get(ERROR_HEADER).cloned())
                .and_then(|v| match v {
                    AMQPValue::LongString(s) => {
                        Some(String::from_utf8_lossy(s.as_bytes()).into_owned())
                    }
                    _ => None,
                });
            let attempt = header_u32(&raw.properties, ATTEMPT_HEADER).unwrap_or(0);
            match serde_json::from_slice::<Event>(&raw.data) {
                Ok(event) => out.push(Delivery {
                    event,
                    attempt,
                    error,
                }),
                Err(e) => tracing::warn!(error = %e, "dropping undecodable dead letter"),
            }
            raw.ack(BasicAckOptions::default()).await?;
        }
        let _ = ch.close(200, "done".into()).await;
        Ok(out)
    }

    async fn ping(&self) -> Result<(), BusError> {
        self.connection().await.map(|_| ())
    }
}
