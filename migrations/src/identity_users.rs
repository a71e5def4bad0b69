//! Identity: users (people who log in) and their rotating refresh tokens. Both are tenant
//! data under row-level security: login names the tenant, refresh tokens carry it.

use sea_orm_migration::prelude::*;

use crate::common::enable_tenant_rls;

pub struct UsersMigration;

impl MigrationName for UsersMigration {
    fn name(&self) -> &str {
        "m0003_identity_users"
    }
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    TenantId,
    InstitutionId,
    Username,
    DisplayName,
    Roles,
    PasswordHash,
    FailedAttempts,
    LockedUntil,
    Status,
    CreatedAt,
}

#[derive(DeriveIden)]
enum RefreshTokens {
    Table,
    Id,
    TenantId,
    UserId,
    FamilyId,
    TokenHash,
    ExpiresAt,
    UsedAt,
    RevokedAt,
    CreatedAt,
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for UsersMigration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Users::Table)
                .col(
                    ColumnDef::new(Users::Id)
                        .string_len(64)
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(Users::TenantId).string_len(64).not_null())
                .col(
                    ColumnDef::new(Users::InstitutionId)
                        .string_len(64)
                        .not_null(),
                )
                .col(ColumnDef::new(Users::Username).string_len(128).not_null())
                .col(
                    ColumnDef::new(Users::DisplayName)
                        .string_len(200)
                        .not_null(),
                )
                .col(ColumnDef::new(Users::Roles).text().not_null())
                .col(ColumnDef::new(Users::PasswordHash).text().not_null())
                .col(
                    ColumnDef::new(Users::FailedAttempts)
                        .integer()
                        .not_null()
                        .default(0),
                )
                .col(
                    ColumnDef::new(Users::LockedUntil)
                        .timestamp_with_time_zone()
                        .null(),
                )
                .col(ColumnDef::new(Users::Status).string_len(16).not_null())
                .col(
                    ColumnDef::new(Users::CreatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("users_tenant_username")
                .table(Users::Table)
                .col(Users::TenantId)
                .col(Users::Username)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(RefreshTokens::Table)
                .col(
                    ColumnDef::new(RefreshTokens::Id)
                        .string_len(64)
                        .not_null()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(RefreshTokens::TenantId)
                        .string_len(64)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(RefreshTokens::UserId)
                        .string_len(64)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(RefreshTokens::FamilyId)
                        .string_len(64)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(RefreshTokens::TokenHash)
                        .string_len(128)
                        .not_null()
                        .unique_key(),
                )
                .col(
                    ColumnDef::new(RefreshTokens::ExpiresAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(RefreshTokens::UsedAt)
                        .timestamp_with_time_zone()
                        .null(),
                )
                .col(
                    ColumnDef::new(RefreshTokens::RevokedAt)
                        .timestamp_with_time_zone()
                        .null(),
                )
                .col(
                    ColumnDef::new(RefreshTokens::CreatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .to_owned(),
        )
        .await?;
        enable_tenant_rls(m, "users").await?;
        enable_tenant_rls(m, "refresh_tokens").await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(RefreshTokens::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(Users::Table).to_owned())
            .await
    }
}
