//! Every Stripe event received, stored under its unique id before processing.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Nullable, Text, Timestamp};

use crate::db::DbConnection;
use crate::db::schema::stripe_events;
use crate::domain::OrganizationId;

pub const RECEIVED: &str = "received";
/// Could not be applied for a reason retrying would not mend (kept with it).
pub const FAILED: &str = "failed";

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = stripe_events)]
pub struct StripeEvent {
    pub id: String,
    pub event_type: String,
    pub api_version: Option<String>,
    pub livemode: bool,
    pub stripe_created: i64,
    pub payload: String,
    pub state: String,
    pub organization_id: Option<OrganizationId>,
    pub detail: Option<String>,
    pub received_at: NaiveDateTime,
    pub processed_at: Option<NaiveDateTime>,
}

pub struct NewStripeEvent<'a> {
    pub id: &'a str,
    pub event_type: &'a str,
    pub api_version: Option<&'a str>,
    pub livemode: bool,
    pub stripe_created: i64,
    pub payload: &'a str,
}

impl StripeEvent {
    /// Stores the event; `false` when its id was stored before (a replay or a
    /// concurrent delivery to another instance), which then changes nothing.
    pub fn insert(conn: &mut DbConnection, new: &NewStripeEvent<'_>) -> QueryResult<bool> {
        let inserted = diesel::sql_query(
            "INSERT INTO stripe_events (id, event_type, api_version, livemode, stripe_created, \
             payload, state, received_at) VALUES ($1, $2, $3, $4, $5, $6, 'received', $7) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind::<Text, _>(new.id)
        .bind::<Text, _>(new.event_type)
        .bind::<Nullable<Text>, _>(new.api_version)
        .bind::<Bool, _>(new.livemode)
        .bind::<BigInt, _>(new.stripe_created)
        .bind::<Text, _>(new.payload)
        .bind::<Timestamp, _>(crate::domain::now())
        .execute(conn)?;
        Ok(inserted == 1)
    }

    pub fn find(conn: &mut DbConnection, id: &str) -> QueryResult<Option<StripeEvent>> {
        stripe_events::table
            .find(id)
            .select(StripeEvent::as_select())
            .first(conn)
            .optional()
    }

    /// Takes a received event for processing: `false` when it is no longer
    /// `received`. The update changes nothing, but on PostgreSQL it holds the
    /// row until the transaction ends, so a second run of the same event waits
    /// here and then sees it finished.
    pub fn claim(conn: &mut DbConnection, id: &str) -> QueryResult<bool> {
        diesel::update(
            stripe_events::table
                .find(id)
                .filter(stripe_events::state.eq(RECEIVED)),
        )
        .set(stripe_events::state.eq(stripe_events::state))
        .execute(conn)
        .map(|n| n == 1)
    }

    /// A failed event back to `received`, for its job to apply it again.
    pub fn reopen(conn: &mut DbConnection, id: &str) -> QueryResult<bool> {
        diesel::update(
            stripe_events::table
                .find(id)
                .filter(stripe_events::state.eq(FAILED)),
        )
        .set((
            stripe_events::state.eq(RECEIVED),
            stripe_events::detail.eq(None::<String>),
            stripe_events::processed_at.eq(None::<NaiveDateTime>),
        ))
        .execute(conn)
        .map(|n| n == 1)
    }

    /// Ids of events still `received` that arrived between `from` and `to`,
    /// oldest first.
    pub fn received_between(
        conn: &mut DbConnection,
        from: NaiveDateTime,
        to: NaiveDateTime,
        limit: i64,
    ) -> QueryResult<Vec<String>> {
        stripe_events::table
            .filter(stripe_events::state.eq(RECEIVED))
            .filter(stripe_events::received_at.ge(from))
            .filter(stripe_events::received_at.lt(to))
            .order(stripe_events::received_at.asc())
            .select(stripe_events::id)
            .limit(limit)
            .load(conn)
    }

    /// Moves a claimed event to its outcome.
    pub fn finish(
        conn: &mut DbConnection,
        id: &str,
        state: &str,
        organization_id: Option<OrganizationId>,
        detail: Option<&str>,
    ) -> QueryResult<bool> {
        diesel::update(
            stripe_events::table
                .find(id)
                .filter(stripe_events::state.eq(RECEIVED)),
        )
        .set((
            stripe_events::state.eq(state),
            stripe_events::organization_id.eq(organization_id),
            stripe_events::detail.eq(detail),
            stripe_events::processed_at.eq(Some(crate::domain::now())),
        ))
        .execute(conn)
        .map(|n| n == 1)
    }

    /// Counts by state, for operators.
    pub fn counts(conn: &mut DbConnection) -> QueryResult<Vec<(String, i64)>> {
        stripe_events::table
            .group_by(stripe_events::state)
            .select((stripe_events::state, diesel::dsl::count_star()))
            .load(conn)
    }
}
