//! What a token's lead sources need: a field mapping for form builders that cannot be told
//! our field names, default action fields applied to every lead of the token, and the key
//! the Google Ads lead form webhook must send.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_sql(
            manager,
            r#"
ALTER TABLE api_tokens
    -- Incoming field name → contract field name, applied in order before validation:
    -- [["Your phone", "phone_number"], …].
    ADD COLUMN field_map       JSONB NOT NULL DEFAULT '[]'::jsonb
        CHECK (jsonb_typeof(field_map) = 'array'),
    -- Contract fields every lead of the token gets unless it gives them itself:
    -- {"ring_group_id": 3, "distribute_to_ring_group": true, …}.
    ADD COLUMN default_actions JSONB NOT NULL DEFAULT '{}'::jsonb
        CHECK (jsonb_typeof(default_actions) = 'object'),
    -- The key the Google Ads lead form sends as `google_key`; NULL refuses every such lead.
    ADD COLUMN google_key      VARCHAR(255);
"#,
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_sql(
            manager,
            "ALTER TABLE api_tokens DROP COLUMN IF EXISTS google_key, \
             DROP COLUMN IF EXISTS default_actions, DROP COLUMN IF EXISTS field_map;",
        )
        .await
    }
}
