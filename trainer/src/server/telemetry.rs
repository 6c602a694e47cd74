//! Prometheus metrics (requests and latency by route and status, predictions, predicts
//! cancelled by a client leaving, trainings by outcome), recorded by a middleware and rendered in
//! the text exposition format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;

/// Latency histogram bucket bounds, seconds.
const BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

#[derive(Default)]
struct Series {
    count: u64,
    sum: f64,
    buckets: [u64; BUCKETS.len()],
}

/// Counters and histograms of this process.
#[derive(Default)]
pub struct Telemetry {
    requests: Mutex<BTreeMap<(String, String, u16), Series>>,
    predictions: AtomicU64,
    cancelled: AtomicU64,
    trainings: Mutex<BTreeMap<&'static str, u64>>,
}

impl Telemetry {
    fn observe(&self, route: String, method: String, status: u16, seconds: f64) {
        let mut m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        let s = m.entry((route, method, status)).or_default();
        s.count += 1;
        s.sum += seconds;
        for (b, bound) in s.buckets.iter_mut().zip(BUCKETS) {
            if seconds <= bound {
                *b += 1;
            }
        }
    }

    /// Count `n` predicted rows.
    pub fn predicted(&self, n: usize) {
        self.predictions.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Count a predict whose client went away before its explanations were done.
    pub fn cancelled(&self) {
        self.cancelled.fetch_add(1, Ordering::Relaxed);
    }

    /// Count a finished training by outcome.
    pub fn training_finished(&self, outcome: &'static str) {
        *self.trainings.lock().unwrap_or_else(|p| p.into_inner()).entry(outcome).or_default() += 1;
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# HELP http_requests_total HTTP requests by route, method and status.");
        let _ = writeln!(out, "# TYPE http_requests_total counter");
        let reqs = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        for ((route, method, status), s) in reqs.iter() {
            let _ = writeln!(
                out,
                "http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {}",
                s.count
            );
        }
        let _ = writeln!(out, "# HELP http_request_duration_seconds Request latency by route, method and status.");
        let _ = writeln!(out, "# TYPE http_request_duration_seconds histogram");
        for ((route, method, status), s) in reqs.iter() {
            let labels = format!("route=\"{route}\",method=\"{method}\",status=\"{status}\"");
            for (b, bound) in s.buckets.iter().zip(BUCKETS) {
                let _ = writeln!(out, "http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {b}");
            }
            let _ = writeln!(out, "http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}", s.count);
            let _ = writeln!(out, "http_request_duration_seconds_sum{{{labels}}} {}", s.sum);
            let _ = writeln!(out, "http_request_duration_seconds_count{{{labels}}} {}", s.count);
        }
        drop(reqs);
        let _ = writeln!(out, "# HELP predictions_total Rows predicted.");
        let _ = writeln!(out, "# TYPE predictions_total counter");
        let _ = writeln!(out, "predictions_total {}", self.predictions.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP predicts_cancelled_total Predicts stopped because their client went away.");
        let _ = writeln!(out, "# TYPE predicts_cancelled_total counter");
        let _ = writeln!(out, "predicts_cancelled_total {}", self.cancelled.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP trainings_total Finished trainings by outcome.");
        let _ = writeln!(out, "# TYPE trainings_total counter");
        let t = self.trainings.lock().unwrap_or_else(|p| p.into_inner());
        for outcome in ["completed", "failed", "cancelled"] {
            let _ = writeln!(out, "trainings_total{{outcome=\"{outcome}\"}} {}", t.get(outcome).copied().unwrap_or(0));
        }
        out
    }
}

/// Middleware: time every request and count it by matched route (not raw path, to bound cardinality).
pub async fn track(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    // Extension methods would each make a new series: bound the label set.
    let method = match req.method().as_str() {
        m @ ("GET" | "POST" | "PUT" | "DELETE" | "PATCH" | "HEAD" | "OPTIONS") => m.to_owned(),
        _ => "other".to_owned(),
    };
    let start = Instant::now();
    let res = next.run(req).await;
    state.telemetry.observe(route, method, res.status().as_u16(), start.elapsed().as_secs_f64());
    res
}

/// Longest client `X-Request-Id` kept.
const MAX_REQUEST_ID: usize = 128;

/// A client's `X-Request-Id` is echoed and logged, so only a short token of `[A-Za-z0-9._:-]`
/// is kept; anything else is dropped and the server makes its own (a UUID).
pub async fn sanitize_request_id(mut req: axum::extract::Request) -> axum::extract::Request {
    let ok = |v: &axum::http::HeaderValue| {
        let b = v.as_bytes();
        !b.is_empty() && b.len() <= MAX_REQUEST_ID && b.iter().all(|c| c.is_ascii_alphanumeric() || b"._:-".contains(c))
    };
    if req.headers().get_all("x-request-id").iter().count() > 1
        || req.headers().get("x-request-id").is_some_and(|v| !ok(v))
    {
        req.headers_mut().remove("x-request-id");
    }
    req
}
