//! Per-API request metrics: Kafka's `RequestMetrics` MBeans (`RequestsPerSec`,
//! `ErrorsPerSec`, `TotalTimeMs`) as Prometheus counters and a histogram.
//!
//! One [`RequestMetrics`] per broker, owned by the [`crate::Broker`]; the families are shared
//! handles, so a registry built at scrape time encodes the live counts.

use std::borrow::Cow;
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use super::errors::{ErrorTally, error_name};
use crate::handlers::{self, DecodeError};

/// Kafka's UNSUPPORTED_VERSION: what an unsupported API version is counted as (Gregor closes
/// the connection, as Kafka does for APIs it does not know).
const UNSUPPORTED_VERSION: i16 = 35;
/// Kafka's INVALID_REQUEST: what an undecodable request body is counted as.
const INVALID_REQUEST: i16 = 42;

/// `request` and `version`, as Kafka's `RequestsPerSec{request=...,version=...}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    request: Cow<'static, str>,
    version: i16,
}

/// `request` alone (the latency histogram; versions would multiply its buckets).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabels {
    request: Cow<'static, str>,
}

/// `request` and `error` (Kafka's error name), as Kafka's `ErrorsPerSec`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    request: Cow<'static, str>,
    error: String,
}

type LatencyFamily = Family<ApiLabels, Histogram, fn() -> Histogram>;

/// Latency buckets: 100 µs doubling to ~26 s, from a metadata answer to a Fetch long poll or an
/// acks=all produce that waits out `request.timeout.ms`.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_1, 2.0, 19))
}

/// Request counts, error counts and latencies per Kafka API.
#[derive(Debug, Clone)]
pub struct RequestMetrics {
    requests: Family<RequestLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    latency: LatencyFamily,
}

impl Default for RequestMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            errors: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
        }
    }
}

/// The API's name as Kafka's `request` tag spells it (`Produce`, `ApiVersions`, ...). Served
/// APIs come from the handler registry without allocating; others (only seen in refused
/// requests) from the codec's enum.
fn api_name(key: ApiKey) -> Cow<'static, str> {
    match handlers::api_name(key) {
        Some(name) => Cow::Borrowed(name),
        None => Cow::Owned(format!("{key:?}")),
    }
}

impl RequestMetrics {
    /// Records one answered (or deliberately unanswered) request: its API and version, how long
    /// it took from decoded request to encoded response, and the error codes of the response.
    pub fn record(&self, key: ApiKey, version: i16, elapsed: Duration, errors: &ErrorTally) {
        let request = api_name(key);
        self.requests
            .get_or_create(&RequestLabels {
                request: request.clone(),
                version,
            })
            .inc();
        self.latency
            .get_or_create(&ApiLabels {
                request: request.clone(),
            })
            .observe(elapsed.as_secs_f64());
        self.count_errors(request, errors);
    }

    /// Records a request refused before a handler ran (the connection is closed): counted as a
    /// request with UNSUPPORTED_VERSION or INVALID_REQUEST. Frames without a known API key or a
    /// parsable header name no API and are not counted here.
    pub fn record_refused(&self, error: &DecodeError) {
        let (key, version, code) = match error {
            DecodeError::UnsupportedVersion { key, version } => {
                (*key, *version, UNSUPPORTED_VERSION)
            }
            DecodeError::Body { key, version, .. } => (*key, *version, INVALID_REQUEST),
            DecodeError::TooShort(_) | DecodeError::UnknownApiKey(_) | DecodeError::Header(_) => {
                return;
            }
        };
        let request = api_name(key);
        self.requests
            .get_or_create(&RequestLabels {
                request: request.clone(),
                version,
            })
            .inc();
        let mut tally = ErrorTally::default();
        tally.add(code);
        self.count_errors(request, &tally);
    }

    fn count_errors(&self, request: Cow<'static, str>, errors: &ErrorTally) {
        for &(code, n) in errors.counts() {
            self.errors
                .get_or_create(&ErrorLabels {
                    request: request.clone(),
                    error: error_name(code),
                })
                .inc_by(u64::from(n));
        }
    }

    /// Adds the three families to `registry` (shared handles: cheap, and the counts stay live).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "kafka_network_requestmetrics_requests",
            "Requests received, by API (Kafka's request name) and version",
            self.requests.clone(),
        );
        registry.register(
            "kafka_network_requestmetrics_errors",
            "Error codes in responses, by API and Kafka error name; a request answered by closing the connection counts once (UNSUPPORTED_VERSION, INVALID_REQUEST, NETWORK_EXCEPTION for acks=0 failures)",
            self.errors.clone(),
        );
        registry.register_with_unit(
            "kafka_network_requestmetrics_totaltime",
            "Time from a decoded request to its encoded response (long polls and acks=all waits included), by API",
            Unit::Seconds,
            self.latency.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_errors_and_latency_render_in_prometheus_text() {
        let m = RequestMetrics::default();
        let mut errors = ErrorTally::default();
        errors.add(6);
        errors.add(6);
        m.record(
            ApiKey::Produce,
            9,
            Duration::from_millis(3),
            &ErrorTally::default(),
        );
        m.record(ApiKey::Produce, 9, Duration::from_millis(5), &errors);
        m.record_refused(&DecodeError::UnsupportedVersion {
            key: ApiKey::Metadata,
            version: 99,
        });
        let mut registry = Registry::default();
        m.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "# TYPE kafka_network_requestmetrics_requests counter",
            r#"kafka_network_requestmetrics_requests_total{request="Produce",version="9"} 2"#,
            r#"kafka_network_requestmetrics_requests_total{request="Metadata",version="99"} 1"#,
            r#"kafka_network_requestmetrics_errors_total{request="Produce",error="NOT_LEADER_OR_FOLLOWER"} 2"#,
            r#"kafka_network_requestmetrics_errors_total{request="Metadata",error="UNSUPPORTED_VERSION"} 1"#,
            "# TYPE kafka_network_requestmetrics_totaltime_seconds histogram",
            r#"kafka_network_requestmetrics_totaltime_seconds_count{request="Produce"} 2"#,
            r#"kafka_network_requestmetrics_totaltime_seconds_bucket{le="0.0032",request="Produce"} 1"#,
            r#"kafka_network_requestmetrics_totaltime_seconds_bucket{le="0.0064",request="Produce"} 2"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in:\n{text}"
            );
        }
        assert!(
            !text.contains(r#"request="Metadata"} "#),
            "a refused request has no latency"
        );
    }
}
