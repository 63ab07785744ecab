//! `GET /metrics` (Prometheus text) and `GET /metrics/json`: this process's
//! counters and histograms, with the pool, queue and memory read at scrape time.
//! Never rate limited or cached; behind `METRICS_TOKEN` when one is set.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use subtle::ConstantTimeEq as _;

use crate::error::{AppError, AppResult};
use crate::startup::AppState;
use crate::telemetry::metrics::{Gauges, QueueGauges, Report};

/// Prometheus' text exposition format.
const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub async fn prometheus(req: HttpRequest, state: web::Data<AppState>) -> AppResult<HttpResponse> {
    let report = scrape(&req, &state).await?;
    Ok(HttpResponse::Ok()
        .content_type(PROMETHEUS_CONTENT_TYPE)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(report.to_prometheus()))
}

pub async fn json(req: HttpRequest, state: web::Data<AppState>) -> AppResult<HttpResponse> {
    let report = scrape(&req, &state).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(report))
}

async fn scrape(req: &HttpRequest, state: &web::Data<AppState>) -> AppResult<Report> {
    authorize(req, state)?;
    let queue = super::probes::queue_stats(state)
        .await
        .map(|q| QueueGauges {
            due: q.due,
            running: q.running,
            dead: q.dead,
            oldest_due_age_seconds: q.oldest_due_age_seconds().unwrap_or(0),
        });
    let pool = state.pool.state();
    Ok(state.metrics.report(Gauges {
        uptime_seconds: state.started.elapsed().as_secs_f64(),
        resident_memory_bytes: super::probes::resident_memory_bytes(),
        pool_connections: pool.connections,
        pool_idle: pool.idle_connections,
        pool_max: state.pool.max_size(),
        queue,
    }))
}

fn authorize(req: &HttpRequest, state: &AppState) -> AppResult<()> {
    let Some(expected) = &state.config.metrics_token else {
        return Ok(());
    };
    let given = crate::auth::bearer_token(req.headers()).unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(expected.expose().as_bytes())) {
        Ok(())
    } else {
        Err(AppError::Unauthorized)
    }
}
