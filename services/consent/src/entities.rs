//! Database rows (sea-orm entities) of the consent schema.

macro_rules! no_relations {
    () => {
        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}
        impl ActiveModelBehavior for ActiveModel {}
    };
}

/// One version of a tenant's classification policy.
pub mod policy {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "policies")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub version: i32,
        /// JSON policy document.
        pub document: String,
        pub changed_by: String,
        pub reason: String,
        pub created_at: DateTimeUtc,
    }
    no_relations!();
}

pub mod grant {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "grants")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub patient_id: String,
        pub grantor_institution: String,
        pub granted_by: String,
        pub recipient_institution: String,
        pub recipient_user: Option<String>,
        pub purpose: String,
        /// JSON array of record ids.
        pub record_ids: String,
        /// JSON array of categories.
        pub categories: String,
        pub data_from: Option<String>,
        pub data_until: Option<String>,
        pub valid_from: DateTimeUtc,
        pub valid_until: DateTimeUtc,
        pub max_accesses: Option<i32>,
        pub accesses_used: i32,
        /// JSON consent evidence.
        pub evidence: String,
        pub referral_id: Option<String>,
        /// `pending` (until anchored), `active`, `revoked`, `rejected`.
        pub status: String,
        pub created_at: DateTimeUtc,
        pub revoked_at: Option<DateTimeUtc>,
        pub revoked_by: Option<String>,
        pub revocation_reason: Option<String>,
        pub ledger_index: Option<i64>,
    }
    no_relations!();
}

pub mod referral {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "referrals")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub patient_id: String,
        pub from_institution: String,
        pub from_user: String,
        pub to_institution: String,
        pub to_user: Option<String>,
        pub reason: String,
        pub urgency: String,
        pub grant_id: Option<String>,
        /// `requested`, `accepted`, `declined`, `completed`, `cancelled`.
        pub status: String,
        pub note: Option<String>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }
    no_relations!();
}

pub mod break_glass {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "break_glass")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub patient_id: String,
        pub user_id: String,
        pub institution_id: String,
        pub justification: String,
        pub started_at: DateTimeUtc,
        pub expires_at: DateTimeUtc,
        pub ledger_index: Option<i64>,
    }
    no_relations!();
}

/// The anchoring queue's rows (shared schema).
pub use caretrail_runtime::anchoring::anchor;
