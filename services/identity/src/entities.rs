//! Database rows (sea-orm entities). Secrets are stored sealed under the master key.

macro_rules! no_relations {
    () => {
        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}
        impl ActiveModelBehavior for ActiveModel {}
    };
}

pub mod tenant {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "tenants")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub name: String,
        pub suite: String,
        pub status: String,
        pub ca_key_enc: String,
        pub ca_public_pem: String,
        pub pseudonym_key_enc: String,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
        pub ca_cert_pem: Option<String>,
    }
    no_relations!();
}

pub mod institution {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "institutions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub code: String,
        pub name: String,
        pub level: String,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
        /// `active` or `deactivated` ([`crate::access::Status`]).
        pub status: String,
    }
    no_relations!();
}

pub mod institution_key {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "institution_keys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub institution_id: String,
        pub algorithm: String,
        pub custody: String,
        pub public_key_pem: String,
        pub private_key_enc: Option<String>,
        pub status: String,
        pub created_at: DateTimeUtc,
        pub retired_at: Option<DateTimeUtc>,
        pub revoked_at: Option<DateTimeUtc>,
        pub revocation_reason: Option<String>,
        pub certificate_pem: Option<String>,
        pub serial: Option<String>,
        pub not_before: Option<DateTimeUtc>,
        pub not_after: Option<DateTimeUtc>,
    }
    no_relations!();
}

pub mod app {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "apps")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: Option<String>,
        pub institution_id: Option<String>,
        pub name: String,
        pub kind: String,
        pub scopes: String,
        pub secret_hash: String,
        pub status: String,
        pub created_at: DateTimeUtc,
        pub secret_rotated_at: DateTimeUtc,
    }
    no_relations!();
}

pub mod patient {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "patients")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub registered_by: String,
        pub created_at: DateTimeUtc,
    }
    no_relations!();
}

pub mod jwt_key {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "jwt_keys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub kid: String,
        pub private_key_enc: String,
        pub public_x: String,
        pub status: String,
        pub created_at: DateTimeUtc,
        pub activated_at: Option<DateTimeUtc>,
        pub retired_at: Option<DateTimeUtc>,
    }
    no_relations!();
}

pub mod revoked_token {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "revoked_tokens")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub jti: String,
        pub tenant_id: Option<String>,
        pub expires_at: i64,
        pub revoked_at: DateTimeUtc,
    }
    no_relations!();
}

pub mod user {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "users")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub institution_id: String,
        pub username: String,
        pub display_name: String,
        pub roles: String,
        pub password_hash: String,
        pub failed_attempts: i32,
        pub locked_until: Option<DateTimeUtc>,
        pub status: String,
        pub created_at: DateTimeUtc,
    }
    no_relations!();
}

pub mod refresh_token {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "refresh_tokens")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub user_id: String,
        pub family_id: String,
        pub token_hash: String,
        pub expires_at: DateTimeUtc,
        pub used_at: Option<DateTimeUtc>,
        pub revoked_at: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
    }
    no_relations!();
}

/// The last checkpoint a regulator's key cosigned for a tenant.
pub mod witness_cosigned {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "witness_cosigned")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub witness: String,
        pub tree_size: i64,
        /// Hex root hash at `tree_size`.
        pub root: String,
        pub origin: String,
        pub cosigned_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The latest cut-off of a user, app, institution or tenant: its access tokens issued before
/// `not_before_ms` are refused everywhere ([`crate::access`]).
pub mod token_cut_off {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "token_cut_offs")]
    pub struct Model {
        /// `subject`, `institution` or `tenant`.
        #[sea_orm(primary_key, auto_increment = false)]
        pub scope_kind: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub scope_id: String,
        pub tenant_id: String,
        /// Unix milliseconds: tokens issued before (`iat_ms`) are refused.
        pub not_before_ms: i64,
        /// Unix seconds after which every token it catches has expired.
        pub until: i64,
        pub created_at: DateTimeUtc,
    }
    no_relations!();
}

/// A one-time password-reset token (its hash), handed to the user by an administrator.
pub mod password_reset {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "password_resets")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub user_id: String,
        pub token_hash: String,
        pub created_by: String,
        pub expires_at: DateTimeUtc,
        pub used_at: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
    }
    no_relations!();
}
