//! What the receiver reads of a token's lead sources, and the account-scoped id check
//! that `leadctl token defaults` uses. Changing a token's
//! sources is an operator operation (`leadctl::admin::sources`).

use crate::entities::tag;
use crate::lead::{LINKS, LeadLinks};
use crate::mapping::{DefaultActions, FieldMap, TokenSources};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter, Statement,
};
use serde_json::Value;

/// The tag every Google Ads test lead gets.
pub const TEST_TAG: &str = "test";

/// What the receiver keeps of a token row's source columns.
pub fn token_sources(
    field_map: &Value,
    defaults: &Value,
    google_key: Option<String>,
) -> TokenSources {
    TokenSources {
        field_map: FieldMap::from_json(field_map),
        defaults: DefaultActions::from_json(defaults),
        google_key,
    }
}

/// The id of the account's `test` tag, if it has one.
pub async fn test_tag(db: &impl ConnectionTrait, account_id: i64) -> Result<Option<i64>, DbErr> {
    Ok(tag::Entity::find()
        .filter(tag::Column::AccountId.eq(account_id))
        .filter(tag::Column::Name.eq(TEST_TAG))
        .one(db)
        .await?
        .map(|t| t.id))
}

/// The fields of `links` whose id is not one of `account_id`'s (another account's id
/// counts as missing), in the order of the contract's table.
pub async fn missing_links(
    db: &impl ConnectionTrait,
    account_id: i64,
    links: &LeadLinks,
) -> Result<Vec<&'static str>, DbErr> {
    let wanted: Vec<(&'static str, &'static str, i64)> = LINKS
        .iter()
        .filter_map(|f| links.get(f.link).map(|id| (f.name, f.table, id)))
        .collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    // One round trip: a row per id that exists in the account.
    let mut values = vec![account_id.into()];
    let mut selects = Vec::with_capacity(wanted.len());
    for (n, (field, table, id)) in wanted.iter().enumerate() {
        values.push((*id).into());
        selects.push(format!(
            "SELECT '{field}' AS field FROM {table} WHERE account_id = $1 AND id = ${}",
            n + 2
        ));
    }
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            selects.join(" UNION ALL "),
            values,
        ))
        .await?;
    let found: Vec<String> = rows
        .iter()
        .filter_map(|r| r.try_get::<String>("", "field").ok())
        .collect();
    Ok(wanted
        .into_iter()
        .map(|(field, _, _)| field)
        .filter(|field| !found.iter().any(|f| f == field))
        .collect())
}
