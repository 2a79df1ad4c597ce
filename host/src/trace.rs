//! OpenTelemetry traces: one trace from a request through the calls it
//! makes, the events it publishes and the handlers that apply them, on this
//! host and across hosts.
//!
//! Off unless the standard variables say where to send spans
//! (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
//! OTLP over HTTP with protobuf; `OTEL_SDK_DISABLED=true` or
//! `OTEL_TRACES_EXPORTER=none` keep it off). Off, a [`Span`] is `None` and
//! starting one is one load of a `OnceLock`, so the hot path pays nothing.
//!
//! Where the spans come from (each hop is the host's, so each is here):
//! - a call into a component (`component`): the call's span, a child of
//!   whoever called: a `traceparent` the HTTP gateway or the control API
//!   received, the calling component's span, or a caller on another host
//!   (`Traceparent` header on the NATS request);
//! - a publish (`capability::publish`): its span's context is stored with
//!   the outbox row and carried as a NATS header, so the handler's span,
//!   seconds later and perhaps on another host, is its child;
//! - an event applied by a handler (`component::handle_events`);
//! - a swap and a migration (`app::swap`, `component`).
//!
//! Store statements are summarised on the span of the unit of work that ran
//! them (`moat.store.statements`, `moat.store.rows`), not a span each.

use std::borrow::Cow;
use std::sync::OnceLock;

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState, Tracer as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

pub use opentelemetry::KeyValue as Attribute;
pub use opentelemetry::trace::SpanKind as Kind;

/// Where a span hangs: the context of its parent, from this process or from
/// a `traceparent` another process sent.
pub type Parent = SpanContext;

static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// Whether spans are being recorded.
pub fn enabled() -> bool {
    TRACER.get().is_some()
}

/// Exports spans until dropped; dropping it flushes what is queued.
pub struct Exporting {
    provider: SdkTracerProvider,
}

impl Drop for Exporting {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!("flushing traces: {e}");
        }
    }
}

/// Starts exporting spans if the `OTEL_*` variables ask for it.
pub fn init() -> anyhow::Result<Option<Exporting>> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let off = var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || var("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"));
    if off || (var("OTEL_EXPORTER_OTLP_ENDPOINT").is_none() && var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none()) {
        return Ok(None);
    }
    let protocol = var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"));
    if let Some(p) = protocol.filter(|p| p != "http/protobuf") {
        anyhow::bail!(
            "OTEL_EXPORTER_OTLP_PROTOCOL={p}: moat exports traces over OTLP/HTTP with protobuf only; unset it or set it to http/protobuf"
        );
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder().with_http().build()?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if var("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("moat");
    }
    let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource.build()).build();
    use opentelemetry::trace::TracerProvider as _;
    if TRACER.set(provider.tracer("moat")).is_err() {
        anyhow::bail!("traces are already being exported");
    }
    Ok(Some(Exporting { provider }))
}

/// A span in progress, ended when dropped; nothing when traces are off.
#[derive(Default)]
pub struct Span(Option<opentelemetry_sdk::trace::Span>);

impl Span {
    /// Starts a span named `name` under `parent` (a root span without one).
    /// `attributes` runs only when spans are being recorded.
    pub fn start(
        name: impl FnOnce() -> Cow<'static, str>,
        kind: SpanKind,
        parent: Option<&Parent>,
        attributes: impl FnOnce() -> Vec<KeyValue>,
    ) -> Span {
        let Some(tracer) = TRACER.get() else {
            return Span(None);
        };
        let context = match parent {
            Some(p) if p.is_valid() => Context::new().with_remote_span_context(p.clone()),
            _ => Context::new(),
        };
        let span = tracer
            .span_builder(name())
            .with_kind(kind)
            .with_attributes(attributes())
            .start_with_context(tracer, &context);
        Span(Some(span))
    }

    /// Its context, as a parent for the spans under it.
    pub fn context(&self) -> Option<Parent> {
        use opentelemetry::trace::Span as _;
        self.0.as_ref().map(|s| s.span_context().clone()).filter(SpanContext::is_valid)
    }

    /// Adds an attribute (its value is computed only when recording).
    pub fn set(&mut self, attribute: impl FnOnce() -> KeyValue) {
        use opentelemetry::trace::Span as _;
        if let Some(span) = &mut self.0 {
            span.set_attribute(attribute());
        }
    }

    /// Marks the span failed, saying why.
    pub fn fail(&mut self, why: impl FnOnce() -> String) {
        use opentelemetry::trace::Span as _;
        if let Some(span) = &mut self.0 {
            span.set_status(Status::error(why()));
        }
    }
}

/// The W3C `traceparent` of `context`: `00-{trace id}-{span id}-{flags}`.
pub fn traceparent(context: &Parent) -> String {
    format!("00-{}-{}-{:02x}", context.trace_id(), context.span_id(), context.trace_flags().to_u8())
}

/// Reads a W3C `traceparent`; `None` if it is not one (a malformed header is
/// ignored, as the W3C spec asks: the request starts a trace of its own).
/// Not the SDK's `TraceContextPropagator`: it accepts ids shorter than the
/// spec's 32 and 16 hex digits, and this reads headers from other hosts.
pub fn parse_traceparent(header: &str) -> Option<Parent> {
    let mut parts = header.trim().split('-');
    let (version, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex =
        |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !hex(version, 2) || version == "ff" || !hex(trace, 32) || !hex(span, 16) || !hex(flags, 2) {
        return None;
    }
    // Version 00 has exactly four fields; later versions may add more.
    if version == "00" && parts.next().is_some() {
        return None;
    }
    let context = SpanContext::new(
        TraceId::from_hex(trace).ok()?,
        SpanId::from_hex(span).ok()?,
        TraceFlags::new(u8::from_str_radix(flags, 16).ok()? & 1),
        true,
        TraceState::default(),
    );
    context.is_valid().then_some(context)
}

/// The parent a request (or a stored event) names in its `traceparent`,
/// when spans are being recorded (otherwise it is not even read).
pub fn incoming(header: Option<&str>) -> Option<Parent> {
    if !enabled() {
        return None;
    }
    header.and_then(parse_traceparent)
}

/// The `TRACEPARENT` environment variable (OpenTelemetry's carrier for
/// command-line tools), if it holds a valid one: the CLI sends it on, so a
/// script's trace continues into the host.
pub fn environment() -> Option<String> {
    let value = std::env::var("TRACEPARENT").ok()?;
    parse_traceparent(&value).map(|p| traceparent(&p))
}

/// `(trace id, span id)` of a span, for log lines.
pub fn ids(context: &Parent) -> (String, String) {
    (context.trace_id().to_string(), context.span_id().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_refuses_what_is_not_one() {
        let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let parent = parse_traceparent(header).expect("a valid traceparent");
        assert_eq!(traceparent(&parent), header);
        assert!(parent.is_sampled());
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad:?} is not a traceparent");
        }
    }

    #[test]
    fn off_spans_are_nothing() {
        let span = Span::start(|| unreachable!("not named when off"), SpanKind::Server, None, || unreachable!());
        assert!(span.context().is_none());
    }
}
