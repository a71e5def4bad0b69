//! Identity: what cutting people and apps off needs — institutions that can be deactivated,
//! token cut-offs every replica loads when it (re)joins the bus, and one-time password-reset
//! tokens. Cut-offs are platform rows (every replica reads all of them, as with revoked
//! tokens: ids and times only); reset tokens are tenant data under row-level security.

use sea_orm_migration::prelude::*;

use crate::common::enable_tenant_rls;

pub struct Lifecycle;

impl MigrationName for Lifecycle {
    fn name(&self) -> &str {
        "m0006_identity_lifecycle"
    }
}

#[derive(DeriveIden)]
enum Institutions {
    Table,
    Status,
}

#[derive(DeriveIden)]
enum TokenCutOffs {
    Table,
    ScopeKind,
    ScopeId,
    TenantId,
    NotBeforeMs,
    Until,
    CreatedAt,
}

#[derive(DeriveIden)]
enum PasswordResets {
    Table,
    Id,
    TenantId,
    UserId,
    TokenHash,
    CreatedBy,
    ExpiresAt,
    UsedAt,
    CreatedAt,
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Lifecycle {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Institutions::Table)
                .add_column(
                    ColumnDef::new(Institutions::Status)
                        .string_len(16)
                        .not_null()
                        .default("active"),
                )
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(TokenCutOffs::Table)
                .col(
                    ColumnDef::new(TokenCutOffs::ScopeKind)
                        .string_len(16)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(TokenCutOffs::ScopeId)
                        .string_len(64)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(TokenCutOffs::TenantId)
                        .string_len(64)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(TokenCutOffs::NotBeforeMs)
                        .big_integer()
                        .not_null(),
                )
                .col(ColumnDef::new(TokenCutOffs::Until).big_integer().not_null())
                .col(
                    ColumnDef::new(TokenCutOffs::CreatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .primary_key(
                    Index::create()
                        .col(TokenCutOffs::ScopeKind)
                        .col(TokenCutOffs::ScopeId),
                )
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(PasswordResets::Table)
                .col(
                    ColumnDef::new(PasswordResets::Id)
                        .string_len(64)
                        .not_null()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(PasswordResets::TenantId)
                        .string_len(64)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(PasswordResets::UserId)
                        .string_len(64)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(PasswordResets::TokenHash)
                        .string_len(128)
                        .not_null()
                        .unique_key(),
                )
                .col(
                    ColumnDef::new(PasswordResets::CreatedBy)
                        .string_len(64)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(PasswordResets::ExpiresAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .col(ColumnDef::new(PasswordResets::UsedAt).timestamp_with_time_zone())
                .col(
                    ColumnDef::new(PasswordResets::CreatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .to_owned(),
        )
        .await?;
        enable_tenant_rls(m, "password_resets").await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in ["password_resets", "token_cut_offs"] {
            m.drop_table(Table::drop().table(Alias::new(t)).to_owned())
                .await?;
        }
        m.alter_table(
            Table::alter()
                .table(Institutions::Table)
                .drop_column(Institutions::Status)
                .to_owned(),
        )
        .await
    }
}
