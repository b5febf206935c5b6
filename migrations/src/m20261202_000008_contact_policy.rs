//! The contact policy's records (§9): consent given with a lead, the do-not-contact list,
//! an account's consent requirement, and a PowerDialer entry's earliest dial time.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_sql(
            manager,
            r#"
-- One row per channel a lead's consent names. Evidence is never overwritten: a later lead
-- adds rows, and a revocation (STOP, an operator) sets revoked_at on the standing ones.
CREATE TABLE contact_consents (
    id                   BIGSERIAL PRIMARY KEY,
    account_id           BIGINT NOT NULL,
    contact_id           BIGINT NOT NULL,
    channel              VARCHAR(8) NOT NULL CHECK (channel IN ('call', 'sms', 'email')),
    given_at             TIMESTAMPTZ NOT NULL,
    -- The disclosure the person agreed to, as the form showed it.
    text                 TEXT CHECK (char_length(text) <= 10000),
    source_url           VARCHAR(2048),
    ip                   VARCHAR(45),
    user_agent           VARCHAR(1024),
    seller               VARCHAR(255),
    trustedform_cert_url VARCHAR(255),
    leadid_token         VARCHAR(36),
    -- The intake that brought it; a redelivered lead adds nothing twice.
    intake_id            UUID,
    revoked_at           TIMESTAMPTZ,
    revoked_reason       VARCHAR(255),
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT contact_consents_contact_fkey FOREIGN KEY (account_id, contact_id)
        REFERENCES contacts (account_id, id) ON DELETE CASCADE,
    CONSTRAINT contact_consents_revoked_check CHECK (revoked_at IS NULL OR revoked_at >= given_at)
);
CREATE INDEX contact_consents_contact_idx ON contact_consents (contact_id, channel);
CREATE UNIQUE INDEX contact_consents_intake_channel_idx
    ON contact_consents (intake_id, channel) WHERE intake_id IS NOT NULL;

-- Numbers of an account that must not be called, texted, or either.
CREATE TABLE do_not_contact (
    id           BIGSERIAL PRIMARY KEY,
    account_id   BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    phone_number VARCHAR(16) NOT NULL CHECK (phone_number ~ '^\+[1-9][0-9]{5,14}$'),
    channel      VARCHAR(8) NOT NULL CHECK (channel IN ('call', 'sms', 'all')),
    reason       VARCHAR(255),
    -- Who put it there: an operator, an imported file, an inbound STOP, the SMS provider.
    source       VARCHAR(16) NOT NULL DEFAULT 'operator'
                 CHECK (source IN ('operator', 'import', 'stop', 'provider')),
    expires_at   TIMESTAMPTZ,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT do_not_contact_account_number_channel_key UNIQUE (account_id, phone_number, channel)
);

-- Channels that need a standing consent record before the product reaches a contact.
ALTER TABLE accounts
    ADD COLUMN require_consent VARCHAR(8)[] NOT NULL DEFAULT '{sms}'
        CHECK (require_consent <@ ARRAY['call', 'sms']::VARCHAR(8)[]);

-- Outside the contact's calling window an entry is queued to be dialed from this instant.
ALTER TABLE powerdialer_items ADD COLUMN not_before TIMESTAMPTZ;
"#,
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_sql(
            manager,
            "ALTER TABLE powerdialer_items DROP COLUMN IF EXISTS not_before;
ALTER TABLE accounts DROP COLUMN IF EXISTS require_consent;
DROP TABLE IF EXISTS do_not_contact;
DROP TABLE IF EXISTS contact_consents;",
        )
        .await
    }
}
