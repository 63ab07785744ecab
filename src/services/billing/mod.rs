//! Billing: plans and their limits, Stripe Checkout and the Customer Portal,
//! and Stripe's webhook events, stored once and applied in a job.
//!
//! Without `STRIPE_SECRET_KEY` billing is off and every organization is
//! unlimited (self-hosting).

pub mod checkout;
pub mod events;
pub mod limits;
pub mod objects;
pub mod stripe;
pub mod webhook;

pub use events::ProcessStripeEvent;
pub use limits::{Entitlement, LimitError, LimitReached, Resource, Usage};
pub use stripe::{StripeApi, StripeError};
