//! An OTLP trace receiver for tests: real OTLP/HTTP (protobuf) and OTLP/gRPC endpoints on
//! loopback that decode each export with the official protobuf definitions and keep the
//! spans, plus a "black hole" that accepts connections and never answers.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use prost::Message;

/// One received span, flattened for assertions.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    /// Span name.
    pub name: String,
    /// Trace id, lower-case hex.
    pub trace_id: String,
    /// Span id, lower-case hex.
    pub span_id: String,
    /// Span kind (2 = server).
    pub kind: i32,
    /// Span attributes as text.
    pub attributes: HashMap<String, String>,
    /// Resource attributes as text.
    pub resource: HashMap<String, String>,
}

type Spans = Arc<Mutex<Vec<ReceivedSpan>>>;

fn text(value: &Option<AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn to_map(attributes: &[KeyValue]) -> HashMap<String, String> {
    attributes
        .iter()
        .map(|kv| (kv.key.clone(), text(&kv.value)))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn keep(request: ExportTraceServiceRequest, spans: &Spans) {
    let mut kept = spans.lock().unwrap();
    for resource_spans in request.resource_spans {
        let resource = resource_spans
            .resource
            .map(|r| to_map(&r.attributes))
            .unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                kept.push(ReceivedSpan {
                    name: span.name.clone(),
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    kind: span.kind,
                    attributes: to_map(&span.attributes),
                    resource: resource.clone(),
                });
            }
        }
    }
}

/// A running receiver; stops with the test process.
pub struct Receiver {
    /// The URL to give the exporter.
    pub endpoint: String,
    /// Spans received so far.
    spans: Spans,
    /// Keeps the gRPC server's runtime alive.
    _runtime: Option<tokio::runtime::Runtime>,
}

impl Receiver {
    /// OTLP/HTTP with protobuf bodies (`POST /v1/traces`).
    pub fn http() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        let spans: Spans = Arc::default();
        let sink = Arc::clone(&spans);
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let sink = Arc::clone(&sink);
                std::thread::spawn(move || serve_http(stream, &sink));
            }
        });
        Receiver {
            endpoint: format!("http://{address}"),
            spans,
            _runtime: None,
        }
    }

    /// OTLP/gRPC (`opentelemetry.proto.collector.trace.v1.TraceService/Export`).
    pub fn grpc() -> Receiver {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let spans: Spans = Arc::default();
        let service = GrpcSink(Arc::clone(&spans));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let address = listener.local_addr().expect("address");
        runtime.spawn(async move {
            let incoming = tokio_stream_from(listener);
            let _ = tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(service))
                .serve_with_incoming(incoming)
                .await;
        });
        Receiver {
            endpoint: format!("http://{address}"),
            spans,
            _runtime: Some(runtime),
        }
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().unwrap().clone()
    }

    /// Waits until at least `count` spans named `name` have arrived, or panics.
    pub fn wait_for(&self, name: &str, count: usize, timeout: Duration) -> Vec<ReceivedSpan> {
        let deadline = Instant::now() + timeout;
        loop {
            let found: Vec<_> = self
                .spans()
                .into_iter()
                .filter(|s| s.name == name)
                .collect();
            if found.len() >= count {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "{} `{name}` spans after {timeout:?}, expected {count}",
                found.len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Serves OTLP/HTTP requests on one keep-alive connection.
fn serve_http(stream: TcpStream, spans: &Spans) {
    let mut writer = match stream.try_clone() {
        Ok(writer) => writer,
        Err(_) => return,
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut length = 0usize;
        let mut first = true;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if first {
                first = false;
                continue;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        match ExportTraceServiceRequest::decode(body.as_slice()) {
            Ok(request) => keep(request, spans),
            Err(error) => panic!("the exporter sent a body that is not OTLP protobuf: {error}"),
        }
        let response = ExportTraceServiceResponse::default().encode_to_vec();
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
            response.len()
        );
        if writer.write_all(head.as_bytes()).is_err() || writer.write_all(&response).is_err() {
            return;
        }
    }
}

/// The gRPC service keeping what it receives.
struct GrpcSink(Spans);

#[tonic::async_trait]
impl TraceService for GrpcSink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        keep(request.into_inner(), &self.0);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// A stream of accepted connections for tonic, without an extra crate.
fn tokio_stream_from(
    listener: tokio::net::TcpListener,
) -> impl tonic::codegen::tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    tonic::codegen::tokio_stream::wrappers::TcpListenerStream::new(listener)
}

/// A collector that accepts connections and never answers (a black hole). Returns its URL.
pub fn black_hole() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address: SocketAddr = listener.local_addr().expect("address");
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().map_while(Result::ok) {
            // Keep the connection open and unread, so the exporter waits for its timeout.
            held.push(stream);
        }
    });
    format!("http://{address}")
}
