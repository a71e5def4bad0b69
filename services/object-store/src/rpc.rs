//! The object store's bus RPC (see [`caretrail_contracts::records`]): record attributes for
//! the consent service (grant scopes must name records of the grant's tenant and patient).

use std::sync::Arc;

use caretrail_bus::{RemoteError, RpcRequest, rpc_fn};
use caretrail_contracts::records::{AttributesIn, AttributesOut, MAX_RECORDS, METHOD_ATTRIBUTES};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use crate::State;
use crate::entities::record;

async fn attributes(state: &State, q: AttributesIn) -> Result<AttributesOut, RemoteError> {
    if q.records.len() > MAX_RECORDS {
        return Err(RemoteError::new(
            "invalid_request",
            format!("at most {MAX_RECORDS} records per call"),
        ));
    }
    let unavailable = |e: crate::ObjectStoreError| {
        tracing::error!(error = %caretrail_platform::problem::ErrorChain(&e), "record attributes look-up failed");
        RemoteError::new("unavailable", "the object store could not answer")
    };
    let txn = caretrail_db::begin_tenant(&state.db, q.tenant.as_str())
        .await
        .map_err(|e| unavailable(e.into()))?;
    let rows = record::Entity::find()
        .filter(record::Column::TenantId.eq(q.tenant.as_str()))
        .filter(record::Column::Id.is_in(q.records.iter().map(|r| r.to_string())))
        .filter(record::Column::Status.is_in(["active", "anchoring"]))
        .all(&txn)
        .await
        .map_err(|e| unavailable(e.into()))?;
    let mut records = Vec::with_capacity(rows.len());
    for row in &rows {
        records.push(crate::api::attributes(row).map_err(unavailable)?);
    }
    Ok(AttributesOut { records })
}

async fn handle(state: Arc<State>, request: RpcRequest) -> Result<serde_json::Value, RemoteError> {
    match request.method.as_str() {
        METHOD_ATTRIBUTES => {
            let input: AttributesIn = serde_json::from_value(request.body)
                .map_err(|e| RemoteError::new("invalid_request", e.to_string()))?;
            let out = attributes(&state, input).await?;
            serde_json::to_value(out).map_err(|e| RemoteError::new("internal_error", e.to_string()))
        }
        other => Err(RemoteError::new(
            "unknown_method",
            format!("the object store has no method {other:?}"),
        )),
    }
}

pub fn handler(state: Arc<State>) -> Arc<dyn caretrail_bus::RpcHandler> {
    rpc_fn(move |request| handle(state.clone(), request))
}
