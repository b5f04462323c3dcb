//! `pdoflow-run worker --metrics-listen ADDR`: a Prometheus endpoint for
//! what the worker runtime reports (`worker/metrics.rs`), served by
//! `metrics-exporter-prometheus` on its own listener.

use std::net::SocketAddr;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

use crate::error::{Error, Result};
use crate::worker::metrics::HANDLER_DURATION;

/// Handler durations, in seconds: from a millisecond to an hour.
const DURATION_BUCKETS: [f64; 16] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0,
];

/// Installs the recorder and starts serving `GET /metrics` on `address`
/// (any path answers; Prometheus scrapes `/metrics`). Fails at once when
/// the address cannot be bound.
pub fn serve(address: SocketAddr) -> Result<()> {
    PrometheusBuilder::new()
        .with_http_listener(address)
        .set_buckets_for_metric(
            Matcher::Full(HANDLER_DURATION.to_owned()),
            &DURATION_BUCKETS,
        )
        .and_then(|builder| builder.install())
        .map_err(|error| Error::Config(format!("--metrics-listen {address}: {error}")))?;
    tracing::info!(%address, "serving worker metrics at /metrics");
    Ok(())
}
