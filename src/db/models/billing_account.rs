//! One row per organization: its Stripe customer and subscription state.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Timestamp};

use crate::db::DbConnection;
use crate::db::schema::billing_accounts;
use crate::domain::{OrganizationId, TenantScope};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = billing_accounts)]
pub struct BillingAccount {
    pub organization_id: OrganizationId,
    pub stripe_customer_id: Option<String>,
    pub stripe_subscription_id: Option<String>,
    pub plan: String,
    pub status: String,
    pub price_id: Option<String>,
    pub current_period_start: Option<NaiveDateTime>,
    pub current_period_end: Option<NaiveDateTime>,
    pub cancel_at_period_end: bool,
    pub trial_end: Option<NaiveDateTime>,
    pub past_due_since: Option<NaiveDateTime>,
    pub stripe_state_at: i64,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// The subscription columns a Stripe event (or a re-fetch) sets together.
#[derive(Debug, Clone, AsChangeset)]
#[diesel(table_name = billing_accounts, treat_none_as_null = true)]
pub struct SubscriptionChange {
    pub stripe_subscription_id: Option<String>,
    pub plan: String,
    pub status: String,
    pub price_id: Option<String>,
    pub current_period_start: Option<NaiveDateTime>,
    pub current_period_end: Option<NaiveDateTime>,
    pub cancel_at_period_end: bool,
    pub trial_end: Option<NaiveDateTime>,
    pub past_due_since: Option<NaiveDateTime>,
    pub stripe_state_at: i64,
    pub updated_at: NaiveDateTime,
}

impl BillingAccount {
    /// The scope's own account; every organization has one once asked for.
    pub fn of(conn: &mut DbConnection, scope: &TenantScope) -> QueryResult<BillingAccount> {
        Self::ensure(conn, scope.organization_id())
    }

    /// The account if one was ever created; never writes (read-only transactions).
    pub fn find(conn: &mut DbConnection, scope: &TenantScope) -> QueryResult<Option<Self>> {
        billing_accounts::table
            .find(scope.organization_id())
            .select(Self::as_select())
            .first(conn)
            .optional()
    }

    /// The account, created on first use (free, no customer yet).
    pub fn ensure(conn: &mut DbConnection, org: OrganizationId) -> QueryResult<BillingAccount> {
        Self::insert_missing(conn, org)?;
        billing_accounts::table
            .find(org)
            .select(BillingAccount::as_select())
            .first(conn)
    }

    /// Like [`ensure`](Self::ensure), holding the row until the transaction
    /// ends, so two instances checking a limit at once take turns: an update
    /// that changes nothing still takes PostgreSQL's row lock (SQLite writers
    /// are serialized already).
    pub fn lock(conn: &mut DbConnection, org: OrganizationId) -> QueryResult<BillingAccount> {
        Self::insert_missing(conn, org)?;
        diesel::update(billing_accounts::table.find(org))
            .set(billing_accounts::updated_at.eq(billing_accounts::updated_at))
            .get_result(conn)
    }

    /// A free account without a customer, unless the organization has one.
    fn insert_missing(conn: &mut DbConnection, org: OrganizationId) -> QueryResult<()> {
        let now = crate::domain::now();
        diesel::sql_query(
            "INSERT INTO billing_accounts (organization_id, created_at, updated_at) \
             VALUES ($1, $2, $3) ON CONFLICT (organization_id) DO NOTHING",
        )
        .bind::<BigInt, _>(org.0)
        .bind::<Timestamp, _>(now)
        .bind::<Timestamp, _>(now)
        .execute(conn)?;
        Ok(())
    }

    pub fn by_customer(
        conn: &mut DbConnection,
        customer_id: &str,
    ) -> QueryResult<Option<BillingAccount>> {
        billing_accounts::table
            .filter(billing_accounts::stripe_customer_id.eq(customer_id))
            .select(BillingAccount::as_select())
            .first(conn)
            .optional()
    }

    /// Records `customer_id` as the organization's Stripe customer unless it
    /// already has one. The condition sits in the `UPDATE` itself, so of two
    /// racing callers (a Checkout and a webhook, or two instances) one links
    /// and the other reads the winner. Returns the account and whether this
    /// call linked it.
    pub fn claim_customer(
        conn: &mut DbConnection,
        org: OrganizationId,
        customer_id: &str,
    ) -> QueryResult<(BillingAccount, bool)> {
        Self::insert_missing(conn, org)?;
        let linked = diesel::update(
            billing_accounts::table
                .find(org)
                .filter(billing_accounts::stripe_customer_id.is_null()),
        )
        .set((
            billing_accounts::stripe_customer_id.eq(customer_id),
            billing_accounts::updated_at.eq(crate::domain::now()),
        ))
        .get_result(conn)
        .optional()?;
        match linked {
            Some(account) => Ok((account, true)),
            None => Ok((Self::ensure(conn, org)?, false)),
        }
    }

    pub fn apply(
        conn: &mut DbConnection,
        org: OrganizationId,
        change: &SubscriptionChange,
    ) -> QueryResult<()> {
        diesel::update(billing_accounts::table.find(org))
            .set(change)
            .execute(conn)?;
        Ok(())
    }
}
