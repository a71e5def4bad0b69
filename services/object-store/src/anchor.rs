//! The ledger entries the object store owes (`record.anchored`, `record.accessed`,
//! `record.access_denied`, `record.erased`) go through the shared anchoring queue
//! ([`caretrail_runtime::anchoring`]); this module holds what settling one means for a
//! record: anchored manifests activate the record, refused ones withdraw it.

use async_trait::async_trait;
use caretrail_contracts::ledger::Receipt;
use caretrail_runtime::anchoring::{AnchorError, AnchorHooks, anchor};
pub use caretrail_runtime::anchoring::{Anchorer, NewAnchor, Outcome, enqueue};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DatabaseConnection, DatabaseTransaction, EntityTrait, QueryFilter};

use crate::entities::record;

pub const KIND_ANCHORED: &str = "record.anchored";
pub const KIND_ACCESSED: &str = "record.accessed";
pub const KIND_DENIED: &str = "record.access_denied";
pub const KIND_ERASED: &str = "record.erased";

pub struct RecordHooks;

#[async_trait]
impl AnchorHooks for RecordHooks {
    async fn anchored(
        &self,
        txn: &DatabaseTransaction,
        row: &anchor::Model,
        receipt: &Receipt,
    ) -> Result<(), AnchorError> {
        if row.kind == KIND_ANCHORED {
            record::Entity::update_many()
                .col_expr(record::Column::Status, Expr::value("active"))
                .col_expr(
                    record::Column::LedgerIndex,
                    Expr::value(receipt.index as i64),
                )
                .col_expr(
                    record::Column::LeafHash,
                    Expr::value(receipt.leaf_hash.clone()),
                )
                .filter(record::Column::Id.eq(row.subject_id.as_str()))
                .filter(record::Column::TenantId.eq(row.tenant_id.as_str()))
                .filter(record::Column::Status.eq("anchoring"))
                .exec(txn)
                .await?;
        }
        Ok(())
    }

    async fn refused(
        &self,
        db: &DatabaseConnection,
        row: &anchor::Model,
    ) -> Result<(), AnchorError> {
        if row.kind != KIND_ANCHORED {
            return Ok(());
        }
        // A record whose manifest never makes it onto the ledger is withdrawn, and its data
        // key destroyed so the stored object is noise.
        let txn = caretrail_db::begin_tenant(db, &row.tenant_id).await?;
        record::Entity::update_many()
            .col_expr(record::Column::Status, Expr::value("rejected"))
            .col_expr(
                record::Column::WrappedKey,
                Expr::value(Option::<String>::None),
            )
            .filter(record::Column::Id.eq(row.subject_id.as_str()))
            .filter(record::Column::TenantId.eq(row.tenant_id.as_str()))
            .filter(record::Column::Status.eq("anchoring"))
            .exec(&txn)
            .await?;
        Ok(txn.commit().await?)
    }
}
