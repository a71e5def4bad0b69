//! Logs and traces. Pretty logs for people, JSON logs for machines; spans become
//! OpenTelemetry spans (so W3C trace context flows even without an exporter) and are
//! exported over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.

use opentelemetry::{KeyValue, trace::TracerProvider as _};
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing_subscriber::{EnvFilter, layer::SubscriberExt, util::SubscriberInitExt};

use crate::config::LogFormat;

/// Keeps the tracer provider alive; flushes pending spans when dropped.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("telemetry: flushing spans failed: {error}");
        }
    }
}

/// Installs the global subscriber. Safe to call more than once (tests): later calls keep the
/// first subscriber.
pub fn init(service_name: &str, format: LogFormat) -> TelemetryGuard {
    install(service_name, format, false)
}

fn install(service_name: &str, format: LogFormat, test_writer: bool) -> TelemetryGuard {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    let resource = Resource::builder()
        .with_attribute(KeyValue::new("service.name", service_name.to_string()))
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    let otlp = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .filter(|v| !v.trim().is_empty());
    if otlp.is_some() {
        match opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()
        {
            Ok(exporter) => builder = builder.with_batch_exporter(exporter),
            Err(error) => eprintln!("telemetry: OTLP exporter disabled: {error}"),
        }
    }
    let provider = builder.build();
    let tracer = provider.tracer(service_name.to_string());

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("info,opentelemetry=warn,opentelemetry_sdk=warn,actix_server=warn,sqlx=warn,sea_orm=warn,lapin=warn,h2=warn,tower=warn,hyper=warn")
    });
    let otel_layer = tracing_opentelemetry::layer().with_tracer(tracer);
    let registry = tracing_subscriber::registry().with(filter).with(otel_layer);
    let result = match format {
        _ if test_writer => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .compact()
                    .with_test_writer(),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(tracing_subscriber::fmt::layer().compact())
            .try_init(),
    };
    if result.is_err() {
        // A subscriber exists already (tests, or the all-in-one binary): keep it.
        return TelemetryGuard { provider: None };
    }
    opentelemetry::global::set_tracer_provider(provider.clone());
    TelemetryGuard {
        provider: Some(provider),
    }
}

/// For tests: installs telemetry once per process, output captured by the test harness.
pub fn init_for_tests() {
    static ONCE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        // Leak the guard: it must live as long as the test process.
        std::mem::forget(install("test", LogFormat::Pretty, true));
    });
}
