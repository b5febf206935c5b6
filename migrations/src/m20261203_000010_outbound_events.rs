//! Outbound events (§11): an account's webhook endpoints, the events its work produced
//! (written in the transaction of that work: an outbox), one delivery per event and
//! subscribed endpoint, and the log of every attempt.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_sql(
            manager,
            r#"
-- Where an account wants its events. `events` empty = every type. The secret signs every
-- delivery; after a rotation the previous one signs too until `previous_secret_until`.
CREATE TABLE webhook_endpoints (
    id                     BIGSERIAL PRIMARY KEY,
    account_id             BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    url                    TEXT NOT NULL CHECK (url ~ '^https?://' AND length(url) <= 2048),
    description            TEXT,
    events                 TEXT[] NOT NULL DEFAULT '{}',
    enabled                BOOLEAN NOT NULL DEFAULT true,
    disabled_reason        TEXT,
    secret                 TEXT NOT NULL,
    previous_secret        TEXT,
    previous_secret_until  TIMESTAMPTZ,
    created_at             TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at             TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_account_idx ON webhook_endpoints (account_id, id);

-- An event, kept when at least one enabled endpoint subscribed to its type at commit time.
-- `body` is the exact bytes every delivery and replay sends.
CREATE TABLE events (
    id          UUID PRIMARY KEY,
    account_id  BIGINT NOT NULL,
    type        VARCHAR(32) NOT NULL,
    intake_id   UUID,
    contact_id  BIGINT,
    body        TEXT NOT NULL CHECK (octet_length(body) <= 20480),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX events_intake_idx ON events (intake_id) WHERE intake_id IS NOT NULL;

-- One event to one endpoint (the outbox makes one per pair; a replay reuses it). `pending` rows are due at `next_attempt_at`; a dispatcher that
-- claims one moves it a lease ahead, so a crashed dispatcher's claims come back. A disabled
-- endpoint's pending deliveries wait at 'infinity' until it is enabled again.
CREATE TABLE event_deliveries (
    id               BIGSERIAL PRIMARY KEY,
    event_id         UUID NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    endpoint_id      BIGINT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    status           VARCHAR(10) NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ,
    last_status      INTEGER,
    last_error       TEXT,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    delivered_at     TIMESTAMPTZ,
    CONSTRAINT event_deliveries_pending_check CHECK ((status = 'pending') = (next_attempt_at IS NOT NULL))
);
-- The dispatcher's lookup, endpoint by endpoint (a slow endpoint's backlog is never in
-- another's way): a range read over the pending deliveries only.
CREATE INDEX event_deliveries_due_idx ON event_deliveries (endpoint_id, next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX event_deliveries_endpoint_idx ON event_deliveries (endpoint_id, created_at);
CREATE INDEX event_deliveries_event_idx ON event_deliveries (event_id);

-- Every attempt: the answer's status (null: none came), how long it took, and the first
-- 1 KB of the answer's body or the reason there was none.
CREATE TABLE delivery_attempts (
    id             BIGSERIAL PRIMARY KEY,
    delivery_id    BIGINT NOT NULL REFERENCES event_deliveries (id) ON DELETE CASCADE,
    endpoint_id    BIGINT NOT NULL,
    event_id       UUID NOT NULL,
    attempted_at   TIMESTAMPTZ NOT NULL,
    status_code    INTEGER,
    latency_ms     INTEGER NOT NULL,
    response_body  TEXT,
    error          TEXT
);
CREATE INDEX delivery_attempts_delivery_idx ON delivery_attempts (delivery_id, id);
CREATE INDEX delivery_attempts_endpoint_idx ON delivery_attempts (endpoint_id, id);
"#,
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_sql(
            manager,
            "DROP TABLE IF EXISTS delivery_attempts;
DROP TABLE IF EXISTS event_deliveries;
DROP TABLE IF EXISTS events;
DROP TABLE IF EXISTS webhook_endpoints;",
        )
        .await
    }
}
