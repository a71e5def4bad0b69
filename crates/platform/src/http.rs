//! The HTTP server every service runs: request ids, trace context, access logs, metrics,
//! problem+json for every error (including the framework's own 404/405/413), the
//! observability endpoints, and a lifecycle that drains on SIGTERM.

use std::{collections::HashMap, future::Future, net::TcpListener, time::Instant};

use actix_web::{
    App, Error, HttpMessage, HttpRequest, HttpResponse, HttpServer,
    body::{BoxBody, MessageBody},
    dev::{Server, ServiceRequest, ServiceResponse},
    error::{InternalError, JsonPayloadError, PathError, QueryPayloadError},
    http::{StatusCode, header},
    middleware::{Next, from_fn},
    web,
};
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    config::HttpSettings,
    health::Health,
    metrics::Metrics,
    problem::{self, Problem},
    trace_context,
};

pub const REQUEST_ID_HEADER: &str = "x-request-id";

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being handled on this task, if any.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// Request id stored in the request's extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

fn new_request_id() -> String {
    format!("req_{}", uuid::Uuid::now_v7().simple())
}

/// Accept a caller's id only if it is short and printable: it ends up in logs.
fn acceptable_request_id(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 128
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

fn incoming_trace_headers(req: &ServiceRequest) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for name in [trace_context::TRACEPARENT, trace_context::TRACESTATE] {
        if let Some(v) = req.headers().get(name).and_then(|v| v.to_str().ok()) {
            map.insert(name.to_string(), v.to_string());
        }
    }
    map
}

/// Outermost middleware: request id, span with remote parent, access log, metrics and the
/// conversion of any bare error response into problem+json.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let started = Instant::now();
    let request_id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable_request_id(v))
        .map(str::to_owned)
        .unwrap_or_else(new_request_id);
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    let method = req.method().to_string();
    let path = req.path().to_string();
    let quiet = matches!(path.as_str(), "/healthz" | "/readyz" | "/metrics");

    let span = tracing::info_span!(
        "http.request",
        otel.name = %format!("{method} {path}"),
        request_id = %request_id,
        http.method = %method,
        http.path = %path,
        http.status = tracing::field::Empty,
    );
    trace_context::set_parent_from(&span, &incoming_trace_headers(&req));

    let id_for_scope = request_id.clone();
    let result = REQUEST_ID
        .scope(id_for_scope, async move { next.call(req).await })
        .instrument(span.clone())
        .await;
    let mut res = match result {
        Ok(res) => res.map_into_boxed_body(),
        Err(err) => return Err(err),
    };

    let status = res.status();
    if status.as_u16() >= 400 && !is_problem(res.headers()) {
        res = into_problem(res, &request_id);
    }
    if let Ok(value) = header::HeaderValue::from_str(&request_id) {
        res.headers_mut()
            .insert(header::HeaderName::from_static(REQUEST_ID_HEADER), value);
    }

    let elapsed = started.elapsed();
    span.record("http.status", status.as_u16());
    if let Some(metrics) = metrics {
        let route = res
            .request()
            .match_pattern()
            .unwrap_or_else(|| "unmatched".to_string());
        metrics.observe_http(&method, &route, status.as_u16(), elapsed.as_secs_f64());
    }
    if !quiet {
        let _enter = span.enter();
        tracing::info!(
            status = status.as_u16(),
            elapsed_ms = elapsed.as_millis() as u64,
            "{method} {path}"
        );
    }
    Ok(res)
}

fn is_problem(headers: &header::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(problem::CONTENT_TYPE))
}

fn into_problem(res: ServiceResponse<BoxBody>, request_id: &str) -> ServiceResponse<BoxBody> {
    let status = res.status();
    let (req, old) = res.into_parts();
    let detail = match status {
        StatusCode::NOT_FOUND => Some(format!("no route for {} {}", req.method(), req.path())),
        StatusCode::METHOD_NOT_ALLOWED => {
            Some(format!("{} is not allowed on {}", req.method(), req.path()))
        }
        StatusCode::PAYLOAD_TOO_LARGE => Some("the request body is larger than allowed".into()),
        _ => None,
    };
    let mut response = Problem::new(status, Problem::generic_code(status), detail)
        .with_request_id(Some(request_id.to_string()))
        .to_response();
    if let Some(allow) = old.headers().get(header::ALLOW) {
        response.headers_mut().insert(header::ALLOW, allow.clone());
    }
    ServiceResponse::new(req, response)
}

fn problem_error<E>(err: E, status: StatusCode, code: &str, detail: String) -> Error
where
    E: std::fmt::Debug + std::fmt::Display + 'static,
{
    InternalError::from_response(err, Problem::new(status, code, Some(detail)).to_response()).into()
}

/// JSON extractor settings: size limit and problem+json for malformed or invalid bodies.
pub fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(|err, _req| {
            let (status, code, detail) = match &err {
                JsonPayloadError::Overflow { .. }
                | JsonPayloadError::OverflowKnownLength { .. } => (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "the JSON body is larger than allowed".to_string(),
                ),
                JsonPayloadError::ContentType => (
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "expected Content-Type: application/json".to_string(),
                ),
                JsonPayloadError::Deserialize(e) if e.is_data() => {
                    (StatusCode::BAD_REQUEST, "invalid_body", e.to_string())
                }
                JsonPayloadError::Deserialize(e) => (
                    StatusCode::BAD_REQUEST,
                    "malformed_json",
                    format!("the body is not valid JSON: {e}"),
                ),
                other => (StatusCode::BAD_REQUEST, "malformed_json", other.to_string()),
            };
            problem_error(err, status, code, detail)
        })
}

pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|err: PathError, _req| {
        let detail = err.to_string();
        problem_error(err, StatusCode::BAD_REQUEST, "invalid_path", detail)
    })
}

pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err: QueryPayloadError, _req| {
        let detail = err.to_string();
        problem_error(err, StatusCode::BAD_REQUEST, "invalid_query", detail)
    })
}

/// Liveness: the process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is alive")))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// Readiness: dependencies reachable and not shutting down.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "Ready for traffic"),
              (status = 503, description = "Not ready: a dependency fails or the process drains")))]
pub async fn readyz(health: web::Data<Health>) -> HttpResponse {
    let readiness = health.readiness().await;
    let status = if readiness.status == "ready" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    HttpResponse::build(status).json(readiness)
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Metrics", content_type = "text/plain")))]
pub async fn metrics(metrics: web::Data<Metrics>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(metrics.render())
}

/// For resources whose other methods must answer 405 rather than fall through to an
/// app-wide default service.
pub async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        Some(format!("{} is not allowed on {}", req.method(), req.path())),
    )
    .with_request_id(request_id_of(&req))
    .to_response()
}

/// A resource whose unsupported methods answer 405 problem+json (actix otherwise falls back
/// to the app's 404). Services register their routes through this.
pub fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

/// A resource served with GET (and HEAD) only: other methods answer 405 with `Allow`.
fn get_only(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(|req: HttpRequest| async move {
        let mut resp = method_not_allowed(req).await;
        resp.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        resp
    }))
}

/// The request's id, for handlers that log or forward it.
pub fn request_id_of(req: &HttpRequest) -> Option<String> {
    req.extensions().get::<RequestId>().map(|r| r.0.clone())
}

/// Everything a service hands to [`start`].
pub struct ServerParts<F> {
    pub service: &'static str,
    pub settings: HttpSettings,
    pub health: Health,
    pub metrics: Metrics,
    /// Registers the service's own routes and app data.
    pub configure: F,
}

/// Binds the listener (port 0 picks a free port) and builds the server, not yet running.
pub fn start<F>(parts: ServerParts<F>) -> std::io::Result<(u16, Server)>
where
    F: Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
{
    let ServerParts {
        service,
        settings,
        health,
        metrics,
        configure,
    } = parts;
    let listener = TcpListener::bind((settings.http_host.as_str(), settings.http_port))?;
    let port = listener.local_addr()?.port();
    let json_limit = settings.json_limit_bytes;
    let health = web::Data::new(health);
    let metrics = web::Data::new(metrics);
    let mut server = HttpServer::new(move || {
        App::new()
            .wrap(from_fn(observe))
            .app_data(health.clone())
            .app_data(metrics.clone())
            .app_data(json_config(json_limit))
            .app_data(path_config())
            .app_data(query_config())
            .service(get_only("/healthz").get(healthz))
            .service(get_only("/readyz").get(readyz))
            .service(get_only("/metrics").get(self::metrics))
            .configure(configure.clone())
    })
    .listen(listener)?
    .shutdown_timeout(settings.shutdown_timeout_secs)
    .disable_signals();
    if settings.http_workers > 0 {
        server = server.workers(settings.http_workers);
    }
    tracing::info!(service, port, "listening");
    Ok((port, server.run()))
}

type ShutdownHook = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;

/// A running service: its HTTP server plus background work (consumers, relays) that must
/// stop cleanly with it.
pub struct Runner {
    port: u16,
    server: Server,
    health: Health,
    cancel: CancellationToken,
    hooks: Vec<ShutdownHook>,
}

impl Runner {
    pub fn new(port: u16, server: Server, health: Health, cancel: CancellationToken) -> Self {
        Self {
            port,
            server,
            health,
            cancel,
            hooks: Vec::new(),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs after the HTTP server has drained, in reverse registration order (like drops):
    /// a service's own hooks (background workers that use the database) run before the
    /// shared infrastructure's, which stops consumers, flushes the outbox and closes the pool.
    pub fn on_shutdown<Fut>(&mut self, hook: impl FnOnce() -> Fut + Send + 'static)
    where
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.hooks.push(Box::new(move || Box::pin(hook())));
    }

    /// Serves until SIGTERM/SIGINT, then drains.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.run_until(crate::shutdown::signal()).await
    }

    /// Serves until `stop` resolves (or the server fails), then drains.
    pub async fn run_until(self, stop: impl Future<Output = ()>) -> std::io::Result<()> {
        let handle = self.server.handle();
        let mut server = tokio::spawn(self.server);
        let outcome = tokio::select! {
            result = &mut server => Some(result),
            _ = stop => None,
            _ = self.cancel.cancelled() => None,
        };
        self.health.set_draining();
        let result = match outcome {
            Some(result) => result,
            None => {
                // Stop accepting, let in-flight requests finish (bounded by shutdown_timeout).
                handle.stop(true).await;
                server.await
            }
        };
        self.cancel.cancel();
        for hook in self.hooks.into_iter().rev() {
            hook().await;
        }
        match result {
            Ok(r) => r,
            Err(join) => Err(std::io::Error::other(join)),
        }
    }
}
