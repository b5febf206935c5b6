//! Accounts, their users and the users' API tokens.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_sql(
            manager,
            r#"
CREATE TABLE accounts (
    id                    BIGSERIAL PRIMARY KEY,
    name                  VARCHAR(255) NOT NULL CHECK (btrim(name) <> ''),
    -- ISO 3166-1 alpha-2 region used to read numbers written without a country code.
    default_region        CHAR(2) NOT NULL DEFAULT 'US' CHECK (default_region ~ '^[A-Z]{2}$'),
    -- Intake requests per rolling 60 s per token; NULL means the configured default.
    rate_limit_per_minute INTEGER CHECK (rate_limit_per_minute > 0),
    created_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at            TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id         BIGSERIAL PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name       VARCHAR(255) NOT NULL CHECK (btrim(name) <> ''),
    email      VARCHAR(255),
    active     BOOLEAN NOT NULL DEFAULT TRUE,
    available  BOOLEAN NOT NULL DEFAULT TRUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Target of the composite foreign keys that keep every link inside one account.
    CONSTRAINT users_account_id_id_key UNIQUE (account_id, id)
);

CREATE TABLE api_tokens (
    id           BIGSERIAL PRIMARY KEY,
    account_id   BIGINT NOT NULL,
    user_id      BIGINT NOT NULL,
    -- Hex SHA-256 of the token; the token itself is never stored.
    token_hash   CHAR(64) NOT NULL CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    -- The token's first characters, so operators can tell tokens apart.
    token_prefix VARCHAR(16) NOT NULL,
    label        VARCHAR(255),
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at   TIMESTAMPTZ,
    last_used_at TIMESTAMPTZ,
    CONSTRAINT api_tokens_token_hash_key UNIQUE (token_hash),
    CONSTRAINT api_tokens_user_fkey FOREIGN KEY (account_id, user_id)
        REFERENCES users (account_id, id) ON DELETE CASCADE
);
CREATE INDEX api_tokens_user_id_idx ON api_tokens (user_id);
"#,
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_sql(
            manager,
            "DROP TABLE IF EXISTS api_tokens; DROP TABLE IF EXISTS users; DROP TABLE IF EXISTS accounts;",
        )
        .await
    }
}
