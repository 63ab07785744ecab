//! `POST /api/v1/csp-reports`: browsers report Content-Security-Policy violations
//! here (the policy names this endpoint), so a blocked script shows up in the logs.

use actix_web::{HttpResponse, web};
use serde_json::Value;

use crate::error::{AppError, AppResult};

/// Reports logged from one request.
const MAX_LOGGED: usize = 5;

/// Both report formats: the legacy `{"csp-report": {...}}` object and the
/// Reporting API's array of `{"type": "csp-violation", "body": {...}}`.
pub async fn receive(body: web::Json<Value>) -> AppResult<HttpResponse> {
    let reports: Vec<&Value> = match &*body {
        Value::Object(map) => map.get("csp-report").into_iter().collect(),
        Value::Array(items) => items.iter().filter_map(|i| i.get("body")).collect(),
        _ => Vec::new(),
    };
    if reports.is_empty() {
        return Err(AppError::Validation(
            "Expected a CSP violation report: {\"csp-report\": {...}} or a Reporting API array."
                .into(),
        ));
    }
    // A page breaks the policy in a few ways at most; a body of thousands of
    // reports is someone filling the log, who gets a few lines like anyone.
    if reports.len() > MAX_LOGGED {
        tracing::warn!(
            reports = reports.len(),
            logged = MAX_LOGGED,
            "content security policy reports beyond the first few not logged"
        );
    }
    for report in reports.into_iter().take(MAX_LOGGED) {
        let field = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| report.get(*n).and_then(Value::as_str))
                .map(|s| s.chars().take(300).collect::<String>())
                .unwrap_or_default()
        };
        tracing::warn!(
            document = field(&["document-uri", "documentURL"]),
            directive = field(&["violated-directive", "effectiveDirective"]),
            blocked = field(&["blocked-uri", "blockedURL"]),
            "content security policy violation"
        );
    }
    Ok(HttpResponse::NoContent().finish())
}
