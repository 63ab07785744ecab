DROP TABLE usage_counters;
DROP TABLE invoices;
DROP TABLE stripe_events;
DROP TABLE billing_accounts;
