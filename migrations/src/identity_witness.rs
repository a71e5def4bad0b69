//! Identity: the last checkpoint each regulator's custodial key cosigned per tenant, so the
//! key only ever cosigns checkpoints proven to extend it (a caller cannot obtain a
//! cosignature on a forked history).

use sea_orm_migration::prelude::*;

use crate::common::enable_tenant_rls;

pub struct WitnessCosignatures;

impl MigrationName for WitnessCosignatures {
    fn name(&self) -> &str {
        "m0005_identity_witness_cosignatures"
    }
}

#[derive(DeriveIden)]
enum WitnessCosigned {
    Table,
    TenantId,
    Witness,
    TreeSize,
    Root,
    Origin,
    CosignedAt,
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for WitnessCosignatures {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(WitnessCosigned::Table)
                .col(
                    ColumnDef::new(WitnessCosigned::TenantId)
                        .string_len(64)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(WitnessCosigned::Witness)
                        .string_len(64)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(WitnessCosigned::TreeSize)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(WitnessCosigned::Root)
                        .string_len(128)
                        .not_null(),
                )
                .col(ColumnDef::new(WitnessCosigned::Origin).text().not_null())
                .col(
                    ColumnDef::new(WitnessCosigned::CosignedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .primary_key(
                    Index::create()
                        .col(WitnessCosigned::TenantId)
                        .col(WitnessCosigned::Witness),
                )
                .to_owned(),
        )
        .await?;
        enable_tenant_rls(m, "witness_cosigned").await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(WitnessCosigned::Table).to_owned())
            .await
    }
}
