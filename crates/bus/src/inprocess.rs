//! In-process bus with the RabbitMQ adapter's semantics: topic routing, durable-per-process
//! queues that buffer until consumed, competing consumers, retries with backoff, a dead-letter
//! queue, and RPC with timeouts. It keeps nothing across restarts: what the outbox has not
//! yet handed to a consumer is republished by the relay after a restart, but an event already
//! delivered into a queue and not yet processed when the process dies is gone.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::{
    Bus, BusError, ConsumerHandle, Delivery, Event, EventHandler, HandlerError, RemoteError,
    RpcHandler, RpcRequest, Subscription, topic_matches,
};

type RpcEnvelope = (
    RpcRequest,
    oneshot::Sender<Result<serde_json::Value, RemoteError>>,
);

struct Queue {
    bindings: Mutex<Vec<String>>,
    tx: mpsc::UnboundedSender<Delivery>,
    rx: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Delivery>>>,
    dead: Mutex<VecDeque<Delivery>>,
}

#[derive(Default)]
struct Inner {
    queues: Mutex<HashMap<String, Arc<Queue>>>,
    rpc: Mutex<HashMap<String, mpsc::Sender<RpcEnvelope>>>,
}

/// Cloning shares the bus.
#[derive(Clone, Default)]
pub struct InProcessBus {
    inner: Arc<Inner>,
}

fn registry() -> &'static Mutex<HashMap<String, InProcessBus>> {
    static REGISTRY: OnceLock<Mutex<HashMap<String, InProcessBus>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

impl InProcessBus {
    pub fn new() -> Self {
        Self::default()
    }

    /// The process-wide bus named `name` (created on first use).
    pub fn shared(name: &str) -> Self {
        let mut map = match registry().lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.entry(name.to_string()).or_default().clone()
    }

    fn queue(&self, name: &str) -> Arc<Queue> {
        let mut queues = lock(&self.inner.queues);
        queues
            .entry(name.to_string())
            .or_insert_with(|| {
                let (tx, rx) = mpsc::unbounded_channel();
                Arc::new(Queue {
                    bindings: Mutex::new(Vec::new()),
                    tx,
                    rx: Arc::new(tokio::sync::Mutex::new(rx)),
                    dead: Mutex::new(VecDeque::new()),
                })
            })
            .clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

#[async_trait]
impl Bus for InProcessBus {
    async fn publish(&self, event: &Event) -> Result<(), BusError> {
        let key = event.routing_key();
        let queues: Vec<Arc<Queue>> = lock(&self.inner.queues).values().cloned().collect();
        for q in queues {
            let bound = lock(&q.bindings).iter().any(|p| topic_matches(p, &key));
            if bound {
                let _ = q.tx.send(Delivery {
                    event: event.clone(),
                    attempt: 0,
                    error: None,
                });
            }
        }
        Ok(())
    }

    async fn subscribe(
        &self,
        subscription: Subscription,
        handler: Arc<dyn EventHandler>,
    ) -> Result<ConsumerHandle, BusError> {
        let queue = self.queue(&subscription.queue);
        {
            let mut bindings = lock(&queue.bindings);
            for b in &subscription.bindings {
                if !bindings.contains(b) {
                    bindings.push(b.clone());
                }
            }
        }
        // The in-process bus never disconnects: consuming starts once.
        if let Some(hook) = &subscription.on_consuming {
            hook.run().await;
        }
        let cancel = CancellationToken::new();
        let token = cancel.clone();
        let task = tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    biased;
                    _ = token.cancelled() => break,
                    d = async { queue.rx.lock().await.recv().await } => d,
                };
                let Some(delivery) = next else { break };
                match crate::dispatch(&handler, &delivery).await {
                    Ok(()) => {}
                    Err(HandlerError::Retry(reason))
                        if delivery.attempt < subscription.max_retries =>
                    {
                        let attempt = delivery.attempt + 1;
                        let delay = subscription.backoff(attempt);
                        tracing::warn!(message_id = %delivery.event.id, attempt, ?delay, %reason, "retrying message");
                        let tx = queue.tx.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            let _ = tx.send(Delivery {
                                attempt,
                                ..delivery
                            });
                        });
                    }
                    Err(e) => {
                        tracing::error!(message_id = %delivery.event.id, error = %e, "dead-lettering message");
                        lock(&queue.dead).push_back(Delivery {
                            error: Some(e.to_string()),
                            ..delivery
                        });
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
        let server = lock(&self.inner.rpc).get(service).cloned();
        let exchange = async {
            let Some(server) = server else {
                // Like RabbitMQ returning a request to a queue no replica has declared.
                return Err(BusError::Unavailable(format!(
                    "no {service} replica serves requests yet"
                )));
            };
            let (tx, rx) = oneshot::channel();
            server
                .send((request, tx))
                .await
                .map_err(|_| BusError::Unavailable(format!("rpc server {service} stopped")))?;
            match rx.await {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(remote)) => Err(BusError::Remote(remote)),
                Err(_) => Err(BusError::Unavailable(format!(
                    "rpc server {service} dropped the request"
                ))),
            }
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(BusError::Timeout(timeout)),
        }
    }

    async fn serve(
        &self,
        service: &str,
        handler: Arc<dyn RpcHandler>,
    ) -> Result<ConsumerHandle, BusError> {
        let (tx, mut rx) = mpsc::channel::<RpcEnvelope>(1024);
        lock(&self.inner.rpc).insert(service.to_string(), tx);
        let cancel = CancellationToken::new();
        let token = cancel.clone();
        let inner = self.inner.clone();
        let name = service.to_string();
        let task = tokio::spawn(async move {
            let mut in_flight = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    biased;
                    _ = token.cancelled() => break,
                    msg = rx.recv() => match msg {
                        Some((request, reply)) => {
                            let handler = handler.clone();
                            in_flight.spawn(async move {
                                let _ = reply.send(crate::dispatch_rpc(&handler, request).await);
                            });
                        }
                        None => break,
                    },
                    Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
                }
            }
            lock(&inner.rpc).remove(&name);
            while in_flight.join_next().await.is_some() {}
        });
        Ok(ConsumerHandle::new(cancel, task))
    }

    async fn take_dead_letters(&self, queue: &str, max: usize) -> Result<Vec<Delivery>, BusError> {
        let q = self.queue(queue);
        let mut dead = lock(&q.dead);
        let n = max.min(dead.len());
        Ok(dead.drain(..n).collect())
    }

    async fn ping(&self) -> Result<(), BusError> {
        Ok(())
    }
}
