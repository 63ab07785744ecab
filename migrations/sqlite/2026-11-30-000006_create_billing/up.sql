-- Billing: one Stripe customer and subscription state per organization, every
-- Stripe event stored under its unique id before it is processed, invoices as
-- Stripe reported them, and per-month usage counters.

CREATE TABLE billing_accounts (
    organization_id BIGINT PRIMARY KEY REFERENCES organizations (id) ON DELETE CASCADE,
    stripe_customer_id TEXT UNIQUE,
    stripe_subscription_id TEXT,
    plan TEXT NOT NULL DEFAULT 'free' CHECK (plan IN ('free', 'pro', 'business')),
    -- Stripe's subscription status ('none' before the first subscription).
    status TEXT NOT NULL DEFAULT 'none',
    price_id TEXT,
    current_period_start TIMESTAMP,
    current_period_end TIMESTAMP,
    cancel_at_period_end BOOLEAN NOT NULL DEFAULT FALSE,
    trial_end TIMESTAMP,
    -- When the subscription first went past_due; the grace period runs from here.
    past_due_since TIMESTAMP,
    -- `created` (Unix seconds) of the newest Stripe event applied: older events
    -- arriving late never overwrite newer state.
    stripe_state_at BIGINT NOT NULL DEFAULT 0,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

CREATE TABLE stripe_events (
    id TEXT PRIMARY KEY,
    event_type TEXT NOT NULL,
    api_version TEXT,
    livemode BOOLEAN NOT NULL DEFAULT FALSE,
    stripe_created BIGINT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'received'
        CHECK (state IN ('received', 'processed', 'ignored', 'unmatched', 'failed')),
    organization_id BIGINT REFERENCES organizations (id) ON DELETE SET NULL,
    detail TEXT,
    received_at TIMESTAMP NOT NULL,
    processed_at TIMESTAMP
);

CREATE INDEX stripe_events_received ON stripe_events (received_at);

CREATE TABLE invoices (
    id INTEGER PRIMARY KEY,
    organization_id BIGINT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    stripe_invoice_id TEXT NOT NULL UNIQUE,
    number TEXT,
    status TEXT NOT NULL,
    currency TEXT NOT NULL,
    amount_due BIGINT NOT NULL,
    amount_paid BIGINT NOT NULL,
    hosted_invoice_url TEXT,
    stripe_created BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

CREATE INDEX invoices_organization ON invoices (organization_id, stripe_created);

CREATE TABLE usage_counters (
    organization_id BIGINT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    -- The calendar month, 'YYYY-MM' (UTC).
    period TEXT NOT NULL,
    messages BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (organization_id, period)
);
