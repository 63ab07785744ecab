//! Invoices as Stripe last reported them, for the billing page.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamp};

use crate::db::DbConnection;
use crate::db::schema::invoices;
use crate::domain::{OrganizationId, TenantScope};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = invoices)]
pub struct Invoice {
    pub id: i64,
    pub organization_id: OrganizationId,
    pub stripe_invoice_id: String,
    pub number: Option<String>,
    pub status: String,
    pub currency: String,
    pub amount_due: i64,
    pub amount_paid: i64,
    pub hosted_invoice_url: Option<String>,
    pub stripe_created: i64,
}

pub struct InvoiceUpdate<'a> {
    pub stripe_invoice_id: &'a str,
    pub number: Option<&'a str>,
    pub status: &'a str,
    pub currency: &'a str,
    pub amount_due: i64,
    pub amount_paid: i64,
    pub hosted_invoice_url: Option<&'a str>,
    pub stripe_created: i64,
}

impl Invoice {
    /// Inserts or refreshes the invoice. A paid invoice stays paid: a late
    /// `payment_failed` for it cannot turn it back.
    pub fn upsert(
        conn: &mut DbConnection,
        org: OrganizationId,
        new: &InvoiceUpdate<'_>,
    ) -> QueryResult<()> {
        let now = crate::domain::now();
        diesel::sql_query(
            "INSERT INTO invoices (organization_id, stripe_invoice_id, number, status, currency, \
             amount_due, amount_paid, hosted_invoice_url, stripe_created, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (stripe_invoice_id) DO UPDATE SET \
             number = COALESCE(excluded.number, invoices.number), \
             status = CASE WHEN invoices.status = 'paid' THEN 'paid' ELSE excluded.status END, \
             amount_due = excluded.amount_due, \
             amount_paid = CASE WHEN invoices.amount_paid > excluded.amount_paid \
                 THEN invoices.amount_paid ELSE excluded.amount_paid END, \
             hosted_invoice_url = COALESCE(excluded.hosted_invoice_url, invoices.hosted_invoice_url), \
             updated_at = excluded.updated_at",
        )
        .bind::<BigInt, _>(org.0)
        .bind::<Text, _>(new.stripe_invoice_id)
        .bind::<Nullable<Text>, _>(new.number)
        .bind::<Text, _>(new.status)
        .bind::<Text, _>(new.currency)
        .bind::<BigInt, _>(new.amount_due)
        .bind::<BigInt, _>(new.amount_paid)
        .bind::<Nullable<Text>, _>(new.hosted_invoice_url)
        .bind::<BigInt, _>(new.stripe_created)
        .bind::<Timestamp, _>(now)
        .bind::<Timestamp, _>(now)
        .execute(conn)?;
        Ok(())
    }

    /// The stored status of a Stripe invoice, if it is known.
    pub fn status_of(
        conn: &mut DbConnection,
        stripe_invoice_id: &str,
    ) -> QueryResult<Option<String>> {
        invoices::table
            .filter(invoices::stripe_invoice_id.eq(stripe_invoice_id))
            .select(invoices::status)
            .first(conn)
            .optional()
    }

    pub fn recent(
        conn: &mut DbConnection,
        scope: &TenantScope,
        limit: i64,
    ) -> QueryResult<Vec<Invoice>> {
        invoices::table
            .filter(invoices::organization_id.eq(scope.organization_id()))
            .order((invoices::stripe_created.desc(), invoices::id.desc()))
            .limit(limit)
            .select(Invoice::as_select())
            .load(conn)
    }
}
