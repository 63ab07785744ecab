//! The parts of Stripe's objects that billing reads, parsed leniently: Stripe
//! adds fields with every API version, and an event must never be lost because
//! of a field we do not use. Unknown fields are ignored; the ids we need are
//! accepted as a string or as an expanded object.

use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use serde::Deserialize;

/// `"cus_123"` or `{"id": "cus_123", …}` (an expanded object).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ref(pub String);

impl<'de> Deserialize<'de> for Ref {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Id(String),
            Object { id: String },
        }
        Ok(match Raw::deserialize(d)? {
            Raw::Id(id) | Raw::Object { id } => Ref(id),
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Envelope {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(deserialize_with = "event_time")]
    pub created: i64,
    #[serde(default)]
    pub api_version: Option<String>,
    #[serde(default)]
    pub livemode: bool,
    /// Absent from "thin" events, which only name what changed.
    #[serde(default)]
    pub data: EventData,
}

/// When Stripe made an event, in seconds: a number in the snapshot events
/// this endpoint handles, an RFC 3339 string in the "thin" (API v2) events an
/// endpoint may also be sent, which are stored and acknowledged like any
/// other type Frontdesk does not use.
pub fn event_time<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Seconds(i64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Seconds(secs) => Ok(secs),
        Raw::Text(text) => chrono::DateTime::parse_from_rfc3339(&text)
            .map(|t| t.timestamp())
            .map_err(|_| serde::de::Error::custom(format!("`created` is not a time: {text:?}"))),
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct EventData {
    pub object: serde_json::Value,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Subscription {
    pub id: String,
    pub customer: Ref,
    pub status: String,
    /// When Stripe created it (seconds).
    #[serde(default)]
    pub created: Option<i64>,
    #[serde(default)]
    pub cancel_at_period_end: bool,
    /// Before API version 2025-03-31 the period is on the subscription; since
    /// then it is on each item.
    #[serde(default)]
    pub current_period_start: Option<i64>,
    #[serde(default)]
    pub current_period_end: Option<i64>,
    #[serde(default)]
    pub trial_end: Option<i64>,
    #[serde(default)]
    pub items: Option<List<SubscriptionItem>>,
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct List<T> {
    #[serde(default = "Vec::new")]
    pub data: Vec<T>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SubscriptionItem {
    #[serde(default)]
    pub price: Option<Ref>,
    #[serde(default)]
    pub current_period_start: Option<i64>,
    #[serde(default)]
    pub current_period_end: Option<i64>,
}

impl Subscription {
    pub fn price_id(&self) -> Option<&str> {
        self.first_item()
            .and_then(|i| i.price.as_ref())
            .map(|p| p.0.as_str())
    }

    fn first_item(&self) -> Option<&SubscriptionItem> {
        self.items.as_ref().and_then(|l| l.data.first())
    }

    pub fn period(&self) -> (Option<NaiveDateTime>, Option<NaiveDateTime>) {
        let item = self.first_item();
        let start = self
            .current_period_start
            .or(item.and_then(|i| i.current_period_start));
        let end = self
            .current_period_end
            .or(item.and_then(|i| i.current_period_end));
        (start.and_then(timestamp), end.and_then(timestamp))
    }

    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.metadata
            .as_ref()
            .and_then(|m| m.get(key))
            .map(String::as_str)
    }

    /// A subscription Stripe no longer has (deleted with its customer, or
    /// test data cleared): as far as the plan goes, it has ended.
    pub fn gone(id: &str, customer: Ref) -> Self {
        Self {
            id: id.to_string(),
            customer,
            status: "canceled".into(),
            created: None,
            cancel_at_period_end: false,
            current_period_start: None,
            current_period_end: None,
            trial_end: None,
            items: None,
            metadata: None,
        }
    }

    /// Canceled subscriptions never become active again in Stripe.
    pub fn is_terminal(&self) -> bool {
        is_terminal(&self.status)
    }

    /// Being paid for (or in its trial): `incomplete` waits for a first
    /// payment, `unpaid` stopped trying.
    pub fn is_paying(&self) -> bool {
        matches!(self.status.as_str(), "active" | "trialing" | "past_due")
    }

    /// Created later, by Stripe's clock; the id settles a tie.
    pub fn is_newer_than(&self, other: &Subscription) -> bool {
        (self.created.unwrap_or(0), self.id.as_str())
            > (other.created.unwrap_or(0), other.id.as_str())
    }
}

pub fn is_terminal(status: &str) -> bool {
    matches!(status, "canceled" | "incomplete_expired")
}

#[derive(Debug, Clone, Deserialize)]
pub struct CheckoutSession {
    pub id: String,
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub customer: Option<Ref>,
    #[serde(default)]
    pub subscription: Option<Ref>,
    #[serde(default)]
    pub client_reference_id: Option<String>,
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Invoice {
    pub id: String,
    #[serde(default)]
    pub customer: Option<Ref>,
    #[serde(default)]
    pub number: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub amount_due: i64,
    #[serde(default)]
    pub amount_paid: i64,
    #[serde(default)]
    pub hosted_invoice_url: Option<String>,
    #[serde(default)]
    pub created: i64,
}

impl Invoice {
    /// "USD 20.00" from Stripe's minor units (zero-decimal currencies aside).
    pub fn amount_label(&self, amount: i64) -> String {
        let currency = self.currency.as_deref().unwrap_or("usd").to_uppercase();
        money(&currency, amount)
    }
}

pub fn money(currency: &str, minor: i64) -> String {
    const ZERO_DECIMAL: [&str; 16] = [
        "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV",
        "XAF", "XOF", "XPF",
    ];
    let currency = currency.to_uppercase();
    if ZERO_DECIMAL.contains(&currency.as_str()) {
        format!("{currency} {minor}")
    } else {
        let sign = if minor < 0 { "-" } else { "" };
        let abs = minor.unsigned_abs();
        format!("{currency} {sign}{}.{:02}", abs / 100, abs % 100)
    }
}

/// Stripe's Unix time as a date, if it falls in years 1 to 9999: chrono reaches
/// further than PostgreSQL's timestamps, which would fail the whole event.
pub fn timestamp(secs: i64) -> Option<NaiveDateTime> {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.naive_utc())
        .filter(|t| (1..=9999).contains(&chrono::Datelike::year(t)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thin_event_reads_with_its_time_as_text_and_no_data() {
        let thin: Envelope = serde_json::from_str(
            r#"{"id":"evt_test_65R9Ijk8fwtdbbZDN3Z","object":"v2.core.event","type":"v1.billing.meter.no_meter_found","created":"2024-09-17T06:20:52.246Z","livemode":false,"related_object":{"id":"mtr_1","type":"billing.meter","url":"/v1/billing/meters/mtr_1"}}"#,
        )
        .unwrap();
        assert_eq!(thin.created, 1_726_554_052);
        assert!(thin.data.object.is_null());
        let bad =
            serde_json::from_str::<Envelope>(r#"{"id":"evt_1","type":"x","created":"yesterday"}"#);
        assert!(bad.unwrap_err().to_string().contains("not a time"));
    }

    #[test]
    fn ids_may_be_strings_or_expanded_objects() {
        let s: CheckoutSession = serde_json::from_str(
            r#"{"id":"cs_1","customer":{"id":"cus_9","object":"customer"},"subscription":"sub_2"}"#,
        )
        .unwrap();
        assert_eq!(s.customer, Some(Ref("cus_9".into())));
        assert_eq!(s.subscription, Some(Ref("sub_2".into())));
    }

    #[test]
    fn the_period_is_read_from_the_subscription_or_its_items() {
        let new: Subscription = serde_json::from_str(
            r#"{"id":"sub_1","customer":"cus_1","status":"active",
                "items":{"data":[{"price":{"id":"price_pro"},"current_period_start":1700000000,"current_period_end":1702592000}]}}"#,
        )
        .unwrap();
        assert_eq!(new.price_id(), Some("price_pro"));
        assert_eq!(new.period().1, timestamp(1_702_592_000));
        let old: Subscription = serde_json::from_str(
            r#"{"id":"sub_1","customer":"cus_1","status":"active","current_period_end":1702592000}"#,
        )
        .unwrap();
        assert_eq!(old.period().1, timestamp(1_702_592_000));
    }

    #[test]
    fn money_uses_minor_units() {
        assert_eq!(money("usd", 2000), "USD 20.00");
        assert_eq!(money("jpy", 500), "JPY 500");
        assert_eq!(money("eur", -5), "EUR -0.05");
    }
}
