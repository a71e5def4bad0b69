//! The object store's bus RPC (service [`SERVICE`]): what other services may learn about
//! records — their decision attributes, never titles or content.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::consent::RecordAttributes;
use crate::{RecordId, TenantId};

/// Bus RPC service name of the object store.
pub const SERVICE: &str = "object-store";
/// RPC method: [`AttributesIn`] → [`AttributesOut`].
pub const METHOD_ATTRIBUTES: &str = "attributes";
/// Most records one call may name.
pub const MAX_RECORDS: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributesIn {
    pub tenant: TenantId,
    pub records: Vec<RecordId>,
}

/// The records of the tenant that exist and are not erased or withdrawn; unknown ids (and
/// other tenants' ids) are simply absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributesOut {
    pub records: Vec<RecordAttributes>,
}

/// What kind of medical record it is; the consent policy gives each a sensitivity level.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    ExamReport,
    LabResult,
    Imaging,
    Diagnosis,
    Prescription,
    DischargeSummary,
    MentalHealth,
    InfectiousDisease,
    Genetic,
    Other,
}

impl Category {
    pub const ALL: [Category; 10] = [
        Category::ExamReport,
        Category::LabResult,
        Category::Imaging,
        Category::Diagnosis,
        Category::Prescription,
        Category::DischargeSummary,
        Category::MentalHealth,
        Category::InfectiousDisease,
        Category::Genetic,
        Category::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::ExamReport => "exam_report",
            Category::LabResult => "lab_result",
            Category::Imaging => "imaging",
            Category::Diagnosis => "diagnosis",
            Category::Prescription => "prescription",
            Category::DischargeSummary => "discharge_summary",
            Category::MentalHealth => "mental_health",
            Category::InfectiousDisease => "infectious_disease",
            Category::Genetic => "genetic",
            Category::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}
