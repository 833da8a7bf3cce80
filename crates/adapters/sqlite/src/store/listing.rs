//! Pages of entities by status and broker, for the API's `applications(status, brokerId, …)`.

use enrollstream_ports::{EntityQuery, EntityRecord};
use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection};

use super::generations::Tables;
use super::rows::{int, EntityRow, ENTITY_COLUMNS};
use crate::sqlite::Result;

/// Where a broker submission keeps the broker's id in an application's state; the expression
/// index of migration 4 is on exactly this expression, so the two must stay equal.
const BROKER_ID: &str = "json_extract(state, '$.submission.broker.id')";

pub(crate) fn list_entities(
    conn: &Connection,
    tables: Tables,
    query: &EntityQuery,
) -> Result<Vec<EntityRecord>> {
    let mut sql = format!(
        "SELECT {ENTITY_COLUMNS} FROM {} WHERE kind = ?",
        tables.entities
    );
    let mut params = vec![Value::Text(query.kind.as_str().to_string())];
    if let Some(status) = &query.status {
        sql.push_str(" AND status = ?");
        params.push(Value::Text(status.clone()));
    }
    if let Some(broker) = &query.broker_id {
        sql.push_str(&format!(" AND {BROKER_ID} = ?"));
        params.push(Value::Text(broker.clone()));
    }
    if let Some(after) = &query.after {
        sql.push_str(" AND id > ?");
        params.push(Value::Text(after.clone()));
    }
    sql.push_str(" ORDER BY id LIMIT ?");
    params.push(Value::Integer(int("limit", query.limit as u64)?));
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(params), EntityRow::read)?;
    rows.map(|row| row?.decode()).collect()
}
