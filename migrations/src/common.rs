//! Migrations every service schema shares.

use sea_orm_migration::{prelude::*, sea_orm::DbBackend};

/// Puts `table` under tenant row-level security (PostgreSQL only; SQLite has no RLS and
/// relies on the tenant filter every query carries).
pub async fn enable_tenant_rls(manager: &SchemaManager<'_>, table: &str) -> Result<(), DbErr> {
    if manager.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    for sql in caretrail_db::tenant_rls_statements(table) {
        manager.get_connection().execute_unprepared(&sql).await?;
    }
    Ok(())
}

/// The transactional outbox (events written with the state change, published by a relay)
/// and the inbox (message ids a consumer has processed, for idempotency).
pub struct OutboxInbox;

impl MigrationName for OutboxInbox {
    fn name(&self) -> &str {
        "m0001_outbox_inbox"
    }
}

#[derive(DeriveIden)]
enum Outbox {
    Table,
    Seq,
    MessageId,
    TenantId,
    RoutingKey,
    EventType,
    Payload,
    Headers,
    OccurredAt,
    PublishedAt,
    Attempts,
    LastError,
}

#[derive(DeriveIden)]
enum Inbox {
    Table,
    Consumer,
    MessageId,
    ProcessedAt,
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for OutboxInbox {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Outbox::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Outbox::Seq)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(Outbox::MessageId)
                            .string_len(36)
                            .not_null()
                            .unique_key(),
                    )
                    .col(ColumnDef::new(Outbox::TenantId).string_len(64).not_null())
                    .col(
                        ColumnDef::new(Outbox::RoutingKey)
                            .string_len(255)
                            .not_null(),
                    )
                    .col(ColumnDef::new(Outbox::EventType).string_len(128).not_null())
                    .col(ColumnDef::new(Outbox::Payload).text().not_null())
                    .col(ColumnDef::new(Outbox::Headers).text().not_null())
                    .col(
                        ColumnDef::new(Outbox::OccurredAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Outbox::PublishedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(Outbox::Attempts)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(ColumnDef::new(Outbox::LastError).text().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("outbox_unpublished")
                    .table(Outbox::Table)
                    .col(Outbox::PublishedAt)
                    .col(Outbox::Seq)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Inbox::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(Inbox::Consumer).string_len(128).not_null())
                    .col(ColumnDef::new(Inbox::MessageId).string_len(36).not_null())
                    .col(
                        ColumnDef::new(Inbox::ProcessedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .primary_key(Index::create().col(Inbox::Consumer).col(Inbox::MessageId))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Inbox::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Outbox::Table).to_owned())
            .await
    }
}
