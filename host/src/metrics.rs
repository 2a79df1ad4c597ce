//! `GET /metrics`: the running app in Prometheus text format (version
//! 0.0.4), served on the HTTP gateway's listener and on the control API.
//!
//! Everything is read when scraped from counters the host keeps anyway
//! (calls by function, routes, swaps, NATS), so metrics cost nothing when
//! nobody scrapes. Labels are bounded: components, the functions they
//! export, routes and outcomes, all fixed by the app's manifest and builds.

use std::fmt::Write as _;

use crate::app::App;
use crate::component::{DURATION_BUCKETS, Outcome};

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The metrics of `app`, now.
pub fn render(app: &App) -> String {
    let mut out = Metrics::default();
    let status = app.status();

    out.family("moat_calls_total", "counter", "Calls of a component's exported functions, by outcome.");
    for c in app.components() {
        for (name, stats) in c.function_stats() {
            let (interface, function) = name.rsplit_once('.').unwrap_or(("", &name));
            for (outcome, n) in Outcome::ALL.iter().zip(stats.outcomes) {
                let labels = [
                    ("component", c.name()),
                    ("interface", interface),
                    ("function", function),
                    ("outcome", outcome.name()),
                ];
                out.sample("moat_calls_total", &labels, n as f64);
            }
        }
    }
    out.family(
        "moat_call_duration_seconds",
        "histogram",
        "How long calls took, from the wait for the component to the commit.",
    );
    for c in app.components() {
        for (name, stats) in c.function_stats() {
            let (interface, function) = name.rsplit_once('.').unwrap_or(("", &name));
            let base = [("component", c.name()), ("interface", interface), ("function", function)];
            let mut cumulative = 0;
            for (bound, n) in DURATION_BUCKETS.iter().zip(stats.buckets) {
                cumulative += n;
                let le = bound.to_string();
                out.sample("moat_call_duration_seconds_bucket", &with(&base, ("le", &le)), cumulative as f64);
            }
            let count: u64 = stats.outcomes.iter().sum();
            out.sample("moat_call_duration_seconds_bucket", &with(&base, ("le", "+Inf")), count as f64);
            out.sample("moat_call_duration_seconds_sum", &base, stats.seconds);
            out.sample("moat_call_duration_seconds_count", &base, count as f64);
        }
    }
    out.family("moat_instance_restarts_total", "counter", "Instances replaced after a trap.");
    for c in &status.components {
        out.sample("moat_instance_restarts_total", &[("component", &c.name)], c.restarts as f64);
    }
    out.family("moat_store_statements_total", "counter", "Statements a component ran on its own database.");
    for c in &status.components {
        out.sample("moat_store_statements_total", &[("component", &c.name)], c.statements as f64);
    }
    out.family("moat_store_rows_total", "counter", "Rows a component's statements returned or changed.");
    for c in &status.components {
        out.sample("moat_store_rows_total", &[("component", &c.name)], c.rows as f64);
    }
    out.family("moat_database_size_bytes", "gauge", "The size of each component's database file.");
    for c in app.components() {
        let size = std::fs::metadata(c.db_path()).map_or(0, |m| m.len());
        out.sample("moat_database_size_bytes", &[("component", c.name())], size as f64);
    }

    let routes: Vec<_> = status.subscriptions.iter().collect();
    let route = |r: &crate::events::RouteStatus| {
        [
            ("publisher", r.subscription.publisher.clone()),
            ("subscriber", r.subscription.subscriber.clone()),
            ("topic", r.subscription.topic.clone()),
        ]
    };
    for (name, kind, help, value) in [
        ("moat_route_events_applied_total", "counter", "Events a route applied since the host started.", 0),
        ("moat_route_events_retried_total", "counter", "Failed attempts a route retried since the host started.", 1),
        ("moat_route_events_dead_lettered_total", "counter", "Events a route dead-lettered since the host started.", 2),
        ("moat_route_lag_events", "gauge", "Events published on a route and not yet applied or dead-lettered.", 3),
        ("moat_route_failing", "gauge", "1 while a route keeps failing at one event, else 0.", 4),
        ("moat_route_dead_letters", "gauge", "Dead letters of a route waiting in its subscriber's database.", 5),
        ("moat_route_lag_seconds", "gauge", "How long the oldest event a route has not yet applied has waited.", 6),
    ] {
        out.family(name, kind, help);
        for r in &routes {
            let v = match value {
                0 => r.applied as f64,
                1 => r.retried as f64,
                2 => r.dead_lettered as f64,
                3 => (r.head - r.cursor).max(0) as f64,
                4 => f64::from(u8::from(r.failing_attempts.is_some())),
                5 => match r.dead_letters {
                    Some(n) => n as f64,
                    None => continue,
                },
                _ => match r.lag_seconds {
                    Some(s) => s,
                    None => continue,
                },
            };
            let labels = route(r);
            out.sample(name, &labels.each_ref().map(|(k, v)| (*k, v.as_str())), v);
        }
    }
    for (name, help, quantile) in [
        ("moat_route_delivery_latency_p50_seconds", "Publish to applied, median of a route's recent deliveries.", 0),
        (
            "moat_route_delivery_latency_p99_seconds",
            "Publish to applied, 99th percentile of a route's recent deliveries.",
            1,
        ),
    ] {
        out.family(name, "gauge", help);
        for r in &routes {
            if let Some(ms) = if quantile == 0 { r.latency_p50_ms } else { r.latency_p99_ms } {
                let labels = route(r);
                out.sample(name, &labels.each_ref().map(|(k, v)| (*k, v.as_str())), ms / 1000.0);
            }
        }
    }
    out.family(
        "moat_events_published_total",
        "counter",
        "Events a component has published on a topic someone subscribes to (its outbox's last sequence number).",
    );
    let mut heads: Vec<(&str, &str, i64)> =
        routes.iter().map(|r| (r.subscription.publisher.as_str(), r.subscription.topic.as_str(), r.head)).collect();
    heads.sort();
    heads.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
    for (publisher, topic, head) in heads {
        out.sample("moat_events_published_total", &[("publisher", publisher), ("topic", topic)], head as f64);
    }

    let swaps = app.swap_counts();
    out.family("moat_swaps_total", "counter", "Swaps of a component's build, by outcome.");
    for s in &swaps {
        out.sample("moat_swaps_total", &[("component", &s.component), ("outcome", s.outcome)], s.swaps as f64);
    }
    out.family(
        "moat_swap_duration_seconds_total",
        "counter",
        "Time spent swapping, from the request to serving or refusal, by outcome.",
    );
    for s in &swaps {
        out.sample(
            "moat_swap_duration_seconds_total",
            &[("component", &s.component), ("outcome", s.outcome)],
            s.seconds,
        );
    }

    if let Some(nats) = &status.nats {
        out.family("moat_nats_connected", "gauge", "1 while this host hears its own heartbeat back through NATS.");
        out.sample("moat_nats_connected", &[("host", &nats.host)], f64::from(u8::from(nats.connected)));
        out.family(
            "moat_nats_relay_lag_events",
            "gauge",
            "Events in a publisher's outbox not yet acknowledged by JetStream.",
        );
        for r in &nats.relays {
            let labels = [("publisher", r.publisher.as_str()), ("topic", r.topic.as_str())];
            out.sample("moat_nats_relay_lag_events", &labels, (r.head - r.relayed).max(0) as f64);
        }
        out.family(
            "moat_nats_consumer_pending_events",
            "gauge",
            "Events JetStream holds for a subscriber on this host that it has not yet fetched.",
        );
        for c in &nats.consumers {
            if let Some(pending) = c.pending {
                let labels = [
                    ("publisher", c.publisher.as_str()),
                    ("subscriber", c.subscriber.as_str()),
                    ("topic", c.topic.as_str()),
                ];
                out.sample("moat_nats_consumer_pending_events", &labels, pending as f64);
            }
        }
    }
    out.text
}

fn with<'a, const N: usize>(base: &[(&'a str, &'a str); N], extra: (&'a str, &'a str)) -> Vec<(&'a str, &'a str)> {
    let mut labels = base.to_vec();
    labels.push(extra);
    labels
}

/// The text being written.
#[derive(Default)]
struct Metrics {
    text: String,
}

impl Metrics {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{k}=\"{}\"", escape(v));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }
}

/// A label value in the text format: backslash, quote and newline escaped.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
