//! Reverse proxy to the services. Bodies stream in both directions (record uploads and
//! downloads can be large); the body limit is enforced on the fly.

use std::{
    cell::Cell,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll},
    time::Duration,
};

use actix_web::{
    HttpRequest, HttpResponse,
    http::header::{self, HeaderMap, HeaderName},
    web,
};
use awc::error::SendRequestError;
use bytes::Bytes;
use futures::Stream;

use caretrail_platform::auth::AuthError;

use crate::{Config, GatewayError, routing};

#[derive(Clone)]
pub(crate) struct ProxySettings {
    pub upstreams: web::Data<Config>,
    pub timeout: Duration,
    /// awc's timeout covers sending the body too: uploads get this one.
    pub upload_timeout: Duration,
    pub body_limit: u64,
    pub verifier: caretrail_platform::auth::Verifier,
    /// Proxies whose `X-Forwarded-For` is believed ([`crate::client_address`]).
    pub trusted_proxies: std::sync::Arc<[ipnet::IpNet]>,
    /// The methods the public document declares per path ([`routing::DocumentedMethods`]).
    pub documented: std::sync::Arc<routing::DocumentedMethods>,
    /// Password and refresh-token checks per client address ([`routing::is_credential_check`]).
    pub credential_checks: std::sync::Arc<caretrail_platform::throttle::Throttle>,
}

/// Headers that describe one hop, not the message (RFC 9110 §7.6.1), plus ones we set.
fn is_hop_header(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "traceparent"
            | "tracestate"
            | "x-request-id"
            | "x-forwarded-for"
            | "x-forwarded-proto"
            | "x-forwarded-host"
            | "forwarded"
    )
}

/// Counts bytes and stops the upload once the limit is passed.
struct Limited<S> {
    inner: S,
    seen: u64,
    limit: u64,
    exceeded: Rc<Cell<bool>>,
}

#[derive(Debug, thiserror::Error)]
#[error("request body exceeds the limit")]
struct TooLarge;

impl<S, E> Stream for Limited<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::error::Error + 'static,
{
    type Item = Result<Bytes, Box<dyn std::error::Error>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                self.seen += chunk.len() as u64;
                if self.seen > self.limit {
                    self.exceeded.set(true);
                    Poll::Ready(Some(Err(Box::new(TooLarge))))
                } else {
                    Poll::Ready(Some(Ok(chunk)))
                }
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

thread_local! {
    // awc clients are per worker thread (they are !Send); one pool per worker.
    static CLIENT: awc::Client = awc::Client::builder()
        .disable_redirects()
        .no_default_headers()
        .finish();
}

pub(crate) async fn forward(
    req: HttpRequest,
    payload: web::Payload,
    settings: web::Data<ProxySettings>,
) -> Result<HttpResponse, GatewayError> {
    let path = req.path();
    let Some(upstream) = routing::route(path) else {
        return Err(GatewayError::NoRoute {
            method: req.method().to_string(),
            path: path.to_string(),
        });
    };
    if let Some(allow) = settings.documented.refusal(path, req.method().as_str()) {
        return Err(GatewayError::MethodNotAllowed {
            method: req.method().to_string(),
            path: path.to_string(),
            allow,
        });
    }
    let anonymous = !routing::requires_token(req.method(), path);
    if !anonymous {
        let token = caretrail_platform::auth::bearer(&req).ok_or(AuthError::Missing)?;
        settings.verifier.verify(token).await?;
    }
    // An anonymous caller costs as little as can be: a small body, and password checks
    // throttled per address here, before any upstream works on them.
    let body_limit = if anonymous {
        settings.body_limit.min(routing::ANONYMOUS_BODY_LIMIT)
    } else {
        settings.body_limit
    };
    let declared_length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared_length.is_some_and(|n| n > body_limit) {
        return Err(GatewayError::BodyTooLarge { limit: body_limit });
    }
    let client = crate::client_address::client_address(
        req.peer_addr().map(|a| a.ip()),
        req.headers()
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .into_iter(),
        &settings.trusted_proxies,
    );
    if routing::is_credential_check(req.method(), path) {
        let address = client.map(|a| a.to_string()).unwrap_or_default();
        // One bucket per endpoint and address: a session refresh does not wait for logins.
        settings
            .credential_checks
            .take(&format!("{path} {address}"))
            .map_err(GatewayError::Throttled)?;
    }

    let mut url = format!("{}{}", settings.upstreams.base_url(upstream), path);
    if !req.query_string().is_empty() {
        url.push('?');
        url.push_str(req.query_string());
    }
    let has_body = declared_length.is_some_and(|n| n > 0)
        || req.headers().contains_key(header::TRANSFER_ENCODING);
    let timeout = if has_body {
        settings.upload_timeout
    } else {
        settings.timeout
    };
    let mut outgoing = CLIENT
        .with(|c| c.request(req.method().clone(), url.as_str()))
        .timeout(timeout)
        .no_decompress();
    for (name, value) in req.headers() {
        if !is_hop_header(name) {
            outgoing = outgoing.append_header((name.clone(), value.clone()));
        }
    }
    if let Some(id) = caretrail_platform::http::request_id_of(&req) {
        outgoing = outgoing.insert_header((caretrail_platform::http::REQUEST_ID_HEADER, id));
    }
    for (name, value) in caretrail_platform::trace_context::current_headers() {
        outgoing = outgoing.insert_header((name, value));
    }
    if let Some(client) = client {
        outgoing = outgoing.insert_header(("x-forwarded-for", client.to_string()));
    }
    // From the connection itself, never from client-supplied forwarding headers.
    let scheme = if req.app_config().secure() {
        "https"
    } else {
        "http"
    };
    outgoing = outgoing.insert_header(("x-forwarded-proto", scheme));
    if let Some(host) = req.headers().get(header::HOST) {
        outgoing = outgoing.insert_header(("x-forwarded-host", host.clone()));
    }

    let exceeded = Rc::new(Cell::new(false));
    let body = Limited {
        inner: payload,
        seen: 0,
        limit: settings.body_limit,
        exceeded: exceeded.clone(),
    };
    let response = match outgoing.send_stream(body).await {
        Ok(r) => r,
        Err(_) if exceeded.get() => {
            return Err(GatewayError::BodyTooLarge {
                limit: settings.body_limit,
            });
        }
        Err(SendRequestError::Timeout) => return Err(GatewayError::UpstreamTimeout),
        Err(e) => return Err(GatewayError::UpstreamUnavailable(e)),
    };

    let mut builder = HttpResponse::build(response.status());
    copy_headers(response.headers(), &mut builder);
    Ok(builder.streaming(response))
}

fn copy_headers(from: &HeaderMap, to: &mut actix_web::HttpResponseBuilder) {
    for (name, value) in from {
        if !is_hop_header(name) && name != header::CONTENT_LENGTH {
            to.append_header((name.clone(), value.clone()));
        }
    }
}
