//! `POST /api/v1/csp-reports`: browsers report Content-Security-Policy violations
//! here (the policy names this endpoint), so a blocked script shows up in the logs.

use actix_web::{HttpResponse, web};
use serde_json::Value;

use crate::error::{AppError, AppResult};

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
    for report in reports {
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
