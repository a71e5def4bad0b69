//! Ledger: how far each tenant's log has been published as `ledger.appended` events.

use sea_orm_migration::prelude::*;

pub struct PublishCursor;

impl MigrationName for PublishCursor {
    fn name(&self) -> &str {
        "m0002_ledger_publish_cursor"
    }
}

#[derive(DeriveIden)]
enum LedgerPublishCursor {
    Table,
    Tenant,
    NextIndex,
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for PublishCursor {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(LedgerPublishCursor::Table)
                .if_not_exists()
                .col(
                    ColumnDef::new(LedgerPublishCursor::Tenant)
                        .string_len(128)
                        .not_null()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(LedgerPublishCursor::NextIndex)
                        .big_integer()
                        .not_null(),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(LedgerPublishCursor::Table).to_owned())
            .await
    }
}
