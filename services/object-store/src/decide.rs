//! Who may read what: every read asks for a decision. With `decisions = consent` the consent
//! service answers (bus RPC, batched for lists); with `owner_only` (until consent answers in
//! a deployment) only the institution that created a record may read it.

use caretrail_contracts::TenantId;
use caretrail_contracts::consent::{
    Action, DecideIn, DecidedBy, Decision, Purpose, RecordAttributes, Subject,
};
use caretrail_runtime::clients::ConsentClient;

use crate::error::ObjectStoreError;

pub enum Decider {
    Consent(ConsentClient),
    OwnerOnly,
}

/// The rule `owner_only` applies.
pub const OWNER_ONLY_RULE: &str = "owner_only";

impl Decider {
    /// One decision per resource, in order. `counted`: the decision is the access itself (a
    /// content read about to be served), so a permit counts against grants limited to a
    /// number of accesses; answers that serve no content count nothing.
    pub async fn decide(
        &self,
        tenant: &TenantId,
        subject: &Subject,
        action: Action,
        purpose: Purpose,
        resources: Vec<RecordAttributes>,
        counted: bool,
    ) -> Result<Vec<Decision>, ObjectStoreError> {
        if resources.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            Decider::OwnerOnly => Ok(resources.iter().map(|r| owner_only(subject, r)).collect()),
            Decider::Consent(client) => {
                let n = resources.len();
                let out = client
                    .decide(&DecideIn {
                        tenant: tenant.clone(),
                        subject: subject.clone(),
                        action,
                        purpose,
                        resources,
                        enforce: counted,
                    })
                    .await
                    .map_err(|e| ObjectStoreError::Dependency("the consent service", e))?;
                if out.decisions.len() != n {
                    return Err(ObjectStoreError::Corrupt(
                        "decision count differs from the request",
                    ));
                }
                Ok(out.decisions)
            }
        }
    }
}

fn owner_only(subject: &Subject, r: &RecordAttributes) -> Decision {
    let permit = subject.institution.as_ref() == Some(&r.owner);
    Decision {
        permit,
        reasons: vec![if permit {
            "the subject's institution created the record".into()
        } else {
            "only the institution that created a record may read it (no consent decisions configured)".into()
        }],
        decided_by: DecidedBy {
            kind: "policy".into(),
            id: OWNER_ONLY_RULE.into(),
        },
        obligations: if permit {
            vec!["log_access".into()]
        } else {
            Vec::new()
        },
    }
}
