//! The ledger's bus RPC (service `ledger`), for services that reach it through RabbitMQ:
//!
//! | method | body | reply |
//! |---|---|---|
//! | `append` | [`AppendIn`] | [`AppendOut`]: one receipt or error per submission, after commit |
//! | `register_tenant` | [`TenantIn`] | `{}` |
//! | `bundles` | [`BundlesIn`] | [`BundlesOut`]: a proof bundle or error per index |
//! | `witness_view` | [`WitnessViewIn`] | [`WitnessViewOut`]: latest checkpoint + consistency proof |
//! | `cosign` | [`CosignatureIn`] | `{}`: a witness cosignature, checked and recorded |
//!
//! Every node serves the queue; a node that does not lead forwards to the leader.

use std::sync::Arc;

use caretrail_bus::{RemoteError, RpcRequest, rpc_fn};
#[cfg(doc)]
use caretrail_contracts::ledger::WitnessViewOut;
use caretrail_contracts::ledger::{
    BundleResult, BundlesIn, BundlesOut, CosignatureIn, LedgerFailure, MAX_BUNDLES, WitnessViewIn,
};
use caretrail_platform::problem::ApiError;

use crate::api::{
    AppendIn, AppendOut, MAX_SUBMISSIONS, TenantIn, append_submissions, register_tenant,
};
use crate::node::LedgerNode;

pub use caretrail_contracts::ledger::{
    METHOD_APPEND, METHOD_BUNDLES, METHOD_COSIGN, METHOD_REGISTER_TENANT, METHOD_WITNESS_VIEW,
};

fn bad(e: impl std::fmt::Display) -> RemoteError {
    RemoteError::new("invalid_request", e.to_string())
}

async fn handle(
    node: Arc<LedgerNode>,
    request: RpcRequest,
) -> Result<serde_json::Value, RemoteError> {
    match request.method.as_str() {
        METHOD_APPEND => {
            let input: AppendIn = serde_json::from_value(request.body).map_err(bad)?;
            if input.submissions.is_empty() || input.submissions.len() > MAX_SUBMISSIONS {
                return Err(bad(format!(
                    "submissions must hold 1..={MAX_SUBMISSIONS} items"
                )));
            }
            let out: AppendOut = append_submissions(&node, input.submissions).await;
            serde_json::to_value(out).map_err(|e| RemoteError::new("internal_error", e.to_string()))
        }
        METHOD_REGISTER_TENANT => {
            let input: TenantIn = serde_json::from_value(request.body).map_err(bad)?;
            register_tenant(&node, input)
                .await
                .map_err(|e| RemoteError::new(e.code, e.message))?;
            Ok(serde_json::json!({}))
        }
        METHOD_BUNDLES => {
            let input: BundlesIn = serde_json::from_value(request.body).map_err(bad)?;
            if input.indexes.len() > MAX_BUNDLES {
                return Err(bad(format!("at most {MAX_BUNDLES} indexes")));
            }
            let data = actix_web::web::Data::new(node.clone());
            let mut results = Vec::with_capacity(input.indexes.len());
            for index in input.indexes {
                results.push(
                    match crate::api::proof_bundle(
                        &data,
                        input.tenant.clone(),
                        &crate::readers::Reader::Everything,
                        index,
                        None,
                    )
                    .await
                    {
                        Ok(bundle) => BundleResult::Bundle(Box::new(bundle)),
                        Err(e) => BundleResult::Error(LedgerFailure::new(e.code(), e.to_string())),
                    },
                );
            }
            serde_json::to_value(BundlesOut { results })
                .map_err(|e| RemoteError::new("internal_error", e.to_string()))
        }
        METHOD_WITNESS_VIEW => {
            let input: WitnessViewIn = serde_json::from_value(request.body).map_err(bad)?;
            let data = actix_web::web::Data::new(node.clone());
            let out = crate::api::witness_view(&data, input)
                .await
                .map_err(|e| RemoteError::new(e.code(), e.to_string()))?;
            serde_json::to_value(out).map_err(|e| RemoteError::new("internal_error", e.to_string()))
        }
        METHOD_COSIGN => {
            let input: CosignatureIn = serde_json::from_value(request.body).map_err(bad)?;
            node.cosign(input.tenant, input.witness, input.tree_size, input.line)
                .await
                .map_err(|e| RemoteError::new(e.code, e.message))?;
            Ok(serde_json::json!({}))
        }
        other => Err(RemoteError::new(
            "unknown_method",
            format!("the ledger has no method {other:?}"),
        )),
    }
}

pub fn handler(node: Arc<LedgerNode>) -> Arc<dyn caretrail_bus::RpcHandler> {
    rpc_fn(move |request| handle(node.clone(), request))
}
