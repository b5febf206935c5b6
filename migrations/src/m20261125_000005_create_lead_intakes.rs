//! The record of every lead the worker finished or dead-lettered.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_sql(
            manager,
            r#"
CREATE TABLE lead_intakes (
    -- The intake id given to the client in the 202; also the AMQP message id.
    id            UUID PRIMARY KEY,
    account_id    BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    -- The token's user and the token that sent the lead.
    user_id       BIGINT,
    token_id      BIGINT REFERENCES api_tokens (id) ON DELETE SET NULL,
    status        VARCHAR(16) NOT NULL
                  CHECK (status IN ('queued', 'processing', 'created', 'updated', 'merged',
                                    'duplicate', 'dead_lettered')),
    -- The lead as received, with the API token removed.
    payload       JSONB NOT NULL,
    contact_id    BIGINT,
    actions       JSONB NOT NULL DEFAULT '[]'::jsonb CHECK (jsonb_typeof(actions) = 'array'),
    warnings      JSONB NOT NULL DEFAULT '[]'::jsonb CHECK (jsonb_typeof(warnings) = 'array'),
    attempts      INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error    TEXT,
    received_at   TIMESTAMPTZ NOT NULL,
    processed_at  TIMESTAMPTZ,
    -- Dead-letter replays: how often, when last and by whom.
    replay_count  INTEGER NOT NULL DEFAULT 0 CHECK (replay_count >= 0),
    replayed_at   TIMESTAMPTZ,
    replayed_by   VARCHAR(255),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT lead_intakes_contact_fkey FOREIGN KEY (account_id, contact_id)
        REFERENCES contacts (account_id, id) ON DELETE SET NULL (contact_id)
);
CREATE INDEX lead_intakes_account_received_idx ON lead_intakes (account_id, received_at DESC);
CREATE INDEX lead_intakes_contact_idx ON lead_intakes (contact_id) WHERE contact_id IS NOT NULL;
CREATE INDEX lead_intakes_dead_lettered_idx ON lead_intakes (received_at) WHERE status = 'dead_lettered';
"#,
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_sql(manager, "DROP TABLE IF EXISTS lead_intakes;").await
    }
}
