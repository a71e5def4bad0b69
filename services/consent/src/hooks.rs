//! What settling a consent entry on the ledger means here: an anchored grant comes into
//! force (on every replica: the change is published); a refused one never does.

use async_trait::async_trait;
use caretrail_contracts::ledger::Receipt;
use caretrail_runtime::anchoring::{AnchorError, AnchorHooks, anchor};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DatabaseConnection, DatabaseTransaction, EntityTrait, QueryFilter};

use crate::api::break_glass::KIND_DECLARED;
use crate::api::grants::KIND_GRANTED;
use crate::entities::{break_glass, grant};

pub struct ConsentHooks;

#[async_trait]
impl AnchorHooks for ConsentHooks {
    async fn anchored(
        &self,
        txn: &DatabaseTransaction,
        row: &anchor::Model,
        receipt: &Receipt,
    ) -> Result<(), AnchorError> {
        match row.kind.as_str() {
            KIND_GRANTED => {
                let activated = grant::Entity::update_many()
                    .col_expr(grant::Column::Status, Expr::value("active"))
                    .col_expr(
                        grant::Column::LedgerIndex,
                        Expr::value(receipt.index as i64),
                    )
                    .filter(grant::Column::Id.eq(row.subject_id.as_str()))
                    .filter(grant::Column::TenantId.eq(row.tenant_id.as_str()))
                    .filter(grant::Column::Status.eq("pending"))
                    .exec(txn)
                    .await?;
                if activated.rows_affected == 1 {
                    crate::engine::publish_change(
                        txn,
                        &row.tenant_id,
                        &crate::engine::IndexChanged::grant(&row.subject_id),
                    )
                    .await?;
                }
            }
            KIND_DECLARED => {
                break_glass::Entity::update_many()
                    .col_expr(
                        break_glass::Column::LedgerIndex,
                        Expr::value(receipt.index as i64),
                    )
                    .filter(break_glass::Column::Id.eq(row.subject_id.as_str()))
                    .filter(break_glass::Column::TenantId.eq(row.tenant_id.as_str()))
                    .exec(txn)
                    .await?;
            }
            _ => {}
        }
        Ok(())
    }

    async fn refused(
        &self,
        db: &DatabaseConnection,
        row: &anchor::Model,
    ) -> Result<(), AnchorError> {
        if row.kind != KIND_GRANTED {
            return Ok(());
        }
        let txn = caretrail_db::begin_tenant(db, &row.tenant_id).await?;
        grant::Entity::update_many()
            .col_expr(grant::Column::Status, Expr::value("rejected"))
            .filter(grant::Column::Id.eq(row.subject_id.as_str()))
            .filter(grant::Column::TenantId.eq(row.tenant_id.as_str()))
            .filter(grant::Column::Status.eq("pending"))
            .exec(&txn)
            .await?;
        Ok(txn.commit().await?)
    }
}
