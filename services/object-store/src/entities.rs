//! Database rows (sea-orm entities).

macro_rules! no_relations {
    () => {
        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}
        impl ActiveModelBehavior for ActiveModel {}
    };
}

/// A record's metadata and its wrapped data key (null once crypto-shredded).
pub mod record {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "records")]
    pub struct Model {
        /// Unique within the tenant (institutions signing their own manifests choose it).
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: String,
        pub patient_id: String,
        pub institution_id: String,
        pub category: String,
        pub media_type: String,
        pub title: String,
        pub encounter_date: String,
        pub fhir_resource_type: Option<String>,
        pub size: i64,
        pub content_hash: String,
        pub suite: String,
        pub storage_key: String,
        pub wrapped_key: Option<String>,
        pub kek_version: i32,
        /// `anchoring`, `active`, `erased`, `rejected`.
        pub status: String,
        pub created_by: String,
        pub created_at: DateTimeUtc,
        /// Base64 canonical manifest (the `record.anchored` payload).
        pub manifest: String,
        pub ledger_index: Option<i64>,
        pub leaf_hash: Option<String>,
        pub erased_at: Option<DateTimeUtc>,
        pub erased_by: Option<String>,
        pub erasure_reason: Option<String>,
    }
    no_relations!();
}

/// A tenant's key-encryption key, sealed by the KMS.
pub mod kek_version {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "kek_versions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub version: i32,
        pub suite: String,
        pub root_key_id: String,
        pub sealed: String,
        pub created_at: DateTimeUtc,
    }
    no_relations!();
}

/// The anchoring queue's rows (shared schema).
pub use caretrail_runtime::anchoring::anchor;
