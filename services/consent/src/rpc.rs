//! Consent's bus RPC (see [`caretrail_contracts::consent`]): batched decisions for the
//! services that enforce them.

use std::sync::Arc;

use caretrail_bus::{RemoteError, RpcRequest, rpc_fn};
use caretrail_contracts::consent::{DecideIn, DecideOut, METHOD_DECIDE};
use caretrail_platform::problem::ApiError;

use crate::engine::Engine;

/// Most resources one decision call may carry.
pub const MAX_RESOURCES: usize = 1000;

async fn handle(
    engine: Arc<Engine>,
    request: RpcRequest,
) -> Result<serde_json::Value, RemoteError> {
    match request.method.as_str() {
        METHOD_DECIDE => {
            let input: DecideIn = serde_json::from_value(request.body)
                .map_err(|e| RemoteError::new("invalid_request", e.to_string()))?;
            if input.resources.len() > MAX_RESOURCES {
                return Err(RemoteError::new(
                    "invalid_request",
                    format!("at most {MAX_RESOURCES} resources per call"),
                ));
            }
            let decisions = engine.decide(&input).await.map_err(|e| {
                if e.status().is_server_error() {
                    tracing::error!(error = %caretrail_platform::problem::ErrorChain(&e), "decision failed");
                }
                RemoteError::new(e.code(), "consent could not decide")
            })?;
            serde_json::to_value(DecideOut { decisions })
                .map_err(|e| RemoteError::new("internal_error", e.to_string()))
        }
        other => Err(RemoteError::new(
            "unknown_method",
            format!("consent has no method {other:?}"),
        )),
    }
}

pub fn handler(engine: Arc<Engine>) -> Arc<dyn caretrail_bus::RpcHandler> {
    rpc_fn(move |request| handle(engine.clone(), request))
}
