//! Usage per organization and calendar month (UTC), counted as it happens.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

use crate::db::DbConnection;
use crate::db::schema::usage_counters;
use crate::domain::{OrganizationId, TenantScope};

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    messages: i64,
}

/// `YYYY-MM` of a moment: the key of its month's counter.
pub fn period_of(t: chrono::NaiveDateTime) -> String {
    t.format("%Y-%m").to_string()
}

pub struct UsageCounter;

impl UsageCounter {
    /// Counts one more message and returns the month's total, atomically: two
    /// instances counting at once both see distinct totals.
    pub fn add_message(
        conn: &mut DbConnection,
        org: OrganizationId,
        period: &str,
    ) -> QueryResult<i64> {
        let rows: Vec<Count> = diesel::sql_query(
            "INSERT INTO usage_counters (organization_id, period, messages) VALUES ($1, $2, 1) \
             ON CONFLICT (organization_id, period) \
             DO UPDATE SET messages = usage_counters.messages + 1 RETURNING messages",
        )
        .bind::<BigInt, _>(org.0)
        .bind::<Text, _>(period)
        .load(conn)?;
        Ok(rows.first().map_or(0, |c| c.messages))
    }

    pub fn messages(
        conn: &mut DbConnection,
        org: OrganizationId,
        period: &str,
    ) -> QueryResult<i64> {
        usage_counters::table
            .find((org, period))
            .select(usage_counters::messages)
            .first(conn)
            .optional()
            .map(|n| n.unwrap_or(0))
    }

    /// Messages per month, oldest month first.
    pub fn history(
        conn: &mut DbConnection,
        scope: &TenantScope,
    ) -> QueryResult<Vec<(String, i64)>> {
        usage_counters::table
            .filter(usage_counters::organization_id.eq(scope.organization_id()))
            .order(usage_counters::period.asc())
            .select((usage_counters::period, usage_counters::messages))
            .load(conn)
    }
}
