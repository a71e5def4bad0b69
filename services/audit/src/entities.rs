//! Database rows (sea-orm entities) of the audit schema.

/// One indexed domain event, linked to its ledger entry.
pub mod audit_event {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_events")]
    pub struct Model {
        /// The bus event id (time-ordered).
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub service: String,
        pub kind: String,
        pub occurred_at: DateTimeUtc,
        pub ledger_index: Option<i64>,
        pub leaf_hash: Option<String>,
        pub record_id: Option<String>,
        pub patient_id: Option<String>,
        pub grant_id: Option<String>,
        pub referral_id: Option<String>,
        pub break_glass_id: Option<String>,
        pub category: Option<String>,
        /// The record's creator, the grant's grantor, the referral's sender.
        pub owner_institution: Option<String>,
        pub actor_subject: Option<String>,
        pub actor_institution: Option<String>,
        pub recipient_institution: Option<String>,
        pub purpose: Option<String>,
        pub action: Option<String>,
        pub permit: Option<bool>,
        pub decided_by_kind: Option<String>,
        pub decided_by_id: Option<String>,
        /// The event's JSON payload.
        pub payload: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A flagged anomaly (one per kind and dedupe key).
pub mod anomaly {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_anomalies")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        /// `break_glass_used`, `access_refused`, `access_volume`, `checkpoint_inconsistent`,
        /// `checkpoint_invalid`.
        pub kind: String,
        pub dedupe_key: String,
        pub subject: Option<String>,
        pub institution: Option<String>,
        pub patient_id: Option<String>,
        pub record_id: Option<String>,
        /// The audit event that raised it.
        pub event_id: String,
        /// JSON detail (e.g. the counts behind a volume flag).
        pub detail: String,
        pub flagged_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The built-in witness's last accepted checkpoint of a tenant's log.
pub mod witness_state {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_witness")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: String,
        /// The ledger's checkpoint verifier key, pinned at first contact.
        pub ledger_key: String,
        pub tree_size: i64,
        /// Hex root hash at `tree_size`.
        pub root: String,
        /// The signed checkpoint note as accepted.
        pub checkpoint: String,
        /// The largest size the witness has cosigned (0: none).
        pub cosigned_size: i64,
        pub accepted_at: DateTimeUtc,
        pub checked_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
