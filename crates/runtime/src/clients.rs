//! Typed bus RPC clients for the contracts other services expose (ledger appends, identity
//! look-ups and custodial signing, consent decisions). Transport only: what to do with an
//! answer is the calling service's business.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use caretrail_bus::{Bus, BusError, call_json};
use caretrail_contracts::consent::{self, DecideIn, DecideOut};
use caretrail_contracts::identity::{
    self, CosignIn, CosignOut, InstitutionInfo, InstitutionsOut, PatientInfo, PatientQuery, SignIn,
    SignOut, SignResult, TenantInfo, TenantQuery, TenantsOut, ToSign,
};
use caretrail_contracts::ledger::{
    self, AppendIn, AppendOut, AppendResultOut, BundleResult, BundlesIn, BundlesOut, CosignatureIn,
    LedgerFailure, Receipt, SubmissionIn, WitnessViewIn, WitnessViewOut,
};
use caretrail_contracts::records::{self, AttributesIn, AttributesOut};
use caretrail_contracts::{RecordId, TenantId};

/// True when a remote error means "does not exist" rather than a failure.
fn is_not_found(e: &BusError) -> bool {
    matches!(e, BusError::Remote(r) if r.code == "not_found")
}

/// Appends to the ledger over the bus; replies come after commit.
#[derive(Clone)]
pub struct LedgerClient {
    bus: Arc<dyn Bus>,
    timeout: Duration,
}

impl LedgerClient {
    pub fn new(bus: Arc<dyn Bus>, timeout: Duration) -> Self {
        Self { bus, timeout }
    }

    /// One result per submission, in order. `Err` when the ledger could not be asked (then
    /// nothing is known about the submissions: retry with the same request ids).
    pub async fn append(
        &self,
        submissions: Vec<SubmissionIn>,
    ) -> Result<Vec<Result<Receipt, LedgerFailure>>, BusError> {
        let n = submissions.len();
        let out: AppendOut = call_json(
            self.bus.as_ref(),
            ledger::SERVICE,
            ledger::METHOD_APPEND,
            &AppendIn { submissions },
            self.timeout,
        )
        .await?;
        let mut results: Vec<Result<Receipt, LedgerFailure>> = out
            .results
            .into_iter()
            .map(|r| match r {
                AppendResultOut::Receipt(r) => Ok(*r),
                AppendResultOut::Error(e) => Err(e),
            })
            .collect();
        results.resize_with(n, || Err(LedgerFailure::unavailable("missing result")));
        Ok(results)
    }

    /// Proof bundles of the tenant's entries against its latest checkpoint, one result per
    /// index (at most [`ledger::MAX_BUNDLES`] per call).
    pub async fn bundles(
        &self,
        tenant: &str,
        indexes: Vec<u64>,
    ) -> Result<Vec<BundleResult>, BusError> {
        let n = indexes.len();
        let out: BundlesOut = call_json(
            self.bus.as_ref(),
            ledger::SERVICE,
            ledger::METHOD_BUNDLES,
            &BundlesIn {
                tenant: tenant.to_string(),
                indexes,
            },
            self.timeout,
        )
        .await?;
        let mut results = out.results;
        results.resize_with(n, || {
            BundleResult::Error(LedgerFailure::unavailable("missing result"))
        });
        Ok(results)
    }
}

impl LedgerClient {
    /// The tenant's latest checkpoint with consistency proofs from `since` and
    /// `cosigned_since`.
    pub async fn witness_view(
        &self,
        tenant: &str,
        since: u64,
        cosigned_since: u64,
    ) -> Result<WitnessViewOut, BusError> {
        call_json(
            self.bus.as_ref(),
            ledger::SERVICE,
            ledger::METHOD_WITNESS_VIEW,
            &WitnessViewIn {
                tenant: tenant.to_string(),
                since,
                cosigned_since,
            },
            self.timeout,
        )
        .await
    }

    /// Records a witness cosignature line over the checkpoint of `tree_size` entries.
    pub async fn cosign(&self, input: &CosignatureIn) -> Result<(), BusError> {
        let _: serde_json::Value = call_json(
            self.bus.as_ref(),
            ledger::SERVICE,
            ledger::METHOD_COSIGN,
            input,
            self.timeout,
        )
        .await?;
        Ok(())
    }
}

/// Asks identity about tenants and patients, and for custodial signatures.
#[derive(Clone)]
pub struct IdentityClient {
    bus: Arc<dyn Bus>,
    timeout: Duration,
    tenants: Arc<Mutex<HashMap<String, (Instant, TenantInfo)>>>,
}

/// How long a tenant's suite and status are cached (suspension takes effect within it).
const TENANT_TTL: Duration = Duration::from_secs(30);

impl IdentityClient {
    pub fn new(bus: Arc<dyn Bus>, timeout: Duration) -> Self {
        Self {
            bus,
            timeout,
            tenants: Arc::default(),
        }
    }

    /// The tenant, or `None` if identity does not know it.
    pub async fn tenant(&self, tenant: &str) -> Result<Option<TenantInfo>, BusError> {
        if let Ok(cache) = self.tenants.lock()
            && let Some((at, info)) = cache.get(tenant)
            && at.elapsed() < TENANT_TTL
        {
            return Ok(Some(info.clone()));
        }
        let answer: Result<TenantInfo, BusError> = call_json(
            self.bus.as_ref(),
            identity::SERVICE,
            identity::METHOD_TENANT,
            &TenantQuery {
                tenant: tenant.to_string(),
            },
            self.timeout,
        )
        .await;
        match answer {
            Ok(info) => {
                if let Ok(mut cache) = self.tenants.lock() {
                    cache.insert(tenant.to_string(), (Instant::now(), info.clone()));
                }
                Ok(Some(info))
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The patient, or `None` if it is not registered in the tenant.
    pub async fn patient(
        &self,
        tenant: &str,
        patient: &str,
    ) -> Result<Option<PatientInfo>, BusError> {
        let answer: Result<PatientInfo, BusError> = call_json(
            self.bus.as_ref(),
            identity::SERVICE,
            identity::METHOD_PATIENT,
            &PatientQuery {
                tenant: tenant.to_string(),
                patient: patient.to_string(),
            },
            self.timeout,
        )
        .await;
        match answer {
            Ok(info) => Ok(Some(info)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The tenant's institutions with their levels.
    pub async fn institutions(&self, tenant: &str) -> Result<Vec<InstitutionInfo>, BusError> {
        let out: InstitutionsOut = call_json(
            self.bus.as_ref(),
            identity::SERVICE,
            identity::METHOD_INSTITUTIONS,
            &TenantQuery {
                tenant: tenant.to_string(),
            },
            self.timeout,
        )
        .await?;
        Ok(out.institutions)
    }

    /// Every tenant identity knows, with its suite and status.
    pub async fn tenants(&self) -> Result<Vec<TenantInfo>, BusError> {
        let out: TenantsOut = call_json(
            self.bus.as_ref(),
            identity::SERVICE,
            identity::METHOD_TENANTS,
            &serde_json::json!({}),
            self.timeout,
        )
        .await?;
        Ok(out.tenants)
    }

    /// A cosignature line by the witness institution's custodial key over a checkpoint body.
    pub async fn cosign(&self, input: &CosignIn) -> Result<String, BusError> {
        let out: CosignOut = call_json(
            self.bus.as_ref(),
            identity::SERVICE,
            identity::METHOD_COSIGN,
            input,
            self.timeout,
        )
        .await?;
        Ok(out.line)
    }

    /// Every token revocation and cut-off still in force.
    pub async fn revocations(
        &self,
    ) -> Result<caretrail_contracts::events::RevocationsV1, BusError> {
        call_json(
            self.bus.as_ref(),
            identity::SERVICE,
            identity::METHOD_REVOCATIONS,
            &serde_json::json!({}),
            self.timeout,
        )
        .await
    }

    /// Signs ledger submissions with the signers' custodial keys; one result per item.
    pub async fn sign(&self, items: Vec<ToSign>) -> Result<Vec<SignResult>, BusError> {
        let n = items.len();
        let out: SignOut = call_json(
            self.bus.as_ref(),
            identity::SERVICE,
            identity::METHOD_SIGN,
            &SignIn { items },
            self.timeout,
        )
        .await?;
        let mut results = out.results;
        results.resize_with(n, || SignResult::Error {
            code: "unavailable".into(),
            message: "missing result".into(),
        });
        Ok(results)
    }
}

/// Asks the consent service for decisions.
#[derive(Clone)]
pub struct ConsentClient {
    bus: Arc<dyn Bus>,
    timeout: Duration,
}

impl ConsentClient {
    pub fn new(bus: Arc<dyn Bus>, timeout: Duration) -> Self {
        Self { bus, timeout }
    }

    pub async fn decide(&self, input: &DecideIn) -> Result<DecideOut, BusError> {
        call_json(
            self.bus.as_ref(),
            consent::SERVICE,
            consent::METHOD_DECIDE,
            input,
            self.timeout,
        )
        .await
    }
}

/// Asks the object store about records.
#[derive(Clone)]
pub struct RecordsClient {
    bus: Arc<dyn Bus>,
    timeout: Duration,
}

impl RecordsClient {
    pub fn new(bus: Arc<dyn Bus>, timeout: Duration) -> Self {
        Self { bus, timeout }
    }

    /// The decision attributes of those of `ids` that exist in the tenant.
    pub async fn attributes(
        &self,
        tenant: &TenantId,
        ids: Vec<RecordId>,
    ) -> Result<Vec<caretrail_contracts::consent::RecordAttributes>, BusError> {
        let out: AttributesOut = call_json(
            self.bus.as_ref(),
            records::SERVICE,
            records::METHOD_ATTRIBUTES,
            &AttributesIn {
                tenant: tenant.clone(),
                records: ids,
            },
            self.timeout,
        )
        .await?;
        Ok(out.records)
    }
}
