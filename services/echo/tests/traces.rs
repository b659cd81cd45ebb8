//! Traces end to end: `echod` exports its connection spans over OTLP/HTTP and OTLP/gRPC
//! to receivers that decode the real protobuf; JSON logs carry the trace ids; and a
//! collector that is down or black-holed neither slows serving nor holds the shutdown.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use inetsvc_testkit::otlp::{black_hole, Receiver};
use inetsvc_testkit::{round_trip, Server};

const ECHOD: &str = env!("CARGO_BIN_EXE_echod");

fn echo_once(server: &Server, payload: &[u8]) {
    assert_eq!(round_trip(server.tcp(), payload), payload);
}

#[test]
fn connection_spans_reach_an_otlp_http_receiver_with_their_attributes() {
    let receiver = Receiver::http();
    let server = Server::start(
        ECHOD,
        &[
            "--otlp-endpoint",
            &receiver.endpoint,
            "--otlp-protocol",
            "http/protobuf",
        ],
    );
    echo_once(&server, b"hello");
    let spans = receiver.wait_for("connection", 1, Duration::from_secs(15));
    let span = &spans[0];
    assert_eq!(span.kind, 2, "server span");
    let a = &span.attributes;
    assert_eq!(a["network.transport"], "tcp");
    assert_eq!(a["network.type"], "ipv4");
    assert_eq!(a["server.port"], server.tcp().port().to_string());
    assert_eq!(a["client.address"], "127.0.0.1");
    assert!(a["client.port"].parse::<u16>().unwrap() > 0);
    assert_eq!(a["inetsvc.service"], "echo");
    assert_eq!(a["inetsvc.bytes_received"], "5");
    assert_eq!(a["inetsvc.bytes_sent"], "5");
    assert_eq!(a["inetsvc.outcome"], "ok");
    assert_eq!(span.resource["service.name"], "inetsvc-echo");
    assert_eq!(span.resource["service.version"], env!("CARGO_PKG_VERSION"));
    assert!(span.resource.contains_key("service.instance.id"));
    // The JSON log line written inside the connection carries the same trace id.
    let log = server.log().join("\n");
    assert!(
        log.contains(&format!("\"trace_id\":\"{}\"", span.trace_id)),
        "no log line with trace id {}:\n{log}",
        span.trace_id
    );
    assert!(log.contains(&format!("\"span_id\":\"{}\"", span.span_id)));
    server.wait_metric(
        "inetsvc_trace_spans_exported_total{service=\"echo\"}",
        1.0,
        Duration::from_secs(5),
    );
}

#[test]
fn standard_otel_variables_configure_grpc_export_and_the_resource() {
    let receiver = Receiver::grpc();
    let server = Server::start_with_env(
        ECHOD,
        &["--udp-trace-sample-ratio", "1"],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_SERVICE_NAME", "echo-under-test"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=test,team=ops",
            ),
        ],
    );
    echo_once(&server, b"grpc");
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    client.send_to(b"sampled", server.udp()).unwrap();
    let mut buf = [0u8; 16];
    client.recv_from(&mut buf).unwrap();

    let connection = &receiver.wait_for("connection", 1, Duration::from_secs(15))[0];
    assert_eq!(connection.resource["service.name"], "echo-under-test");
    assert_eq!(connection.resource["deployment.environment"], "test");
    assert_eq!(connection.resource["team"], "ops");
    let datagram = &receiver.wait_for("datagram", 1, Duration::from_secs(15))[0];
    assert_eq!(datagram.attributes["network.transport"], "udp");
    assert_eq!(datagram.attributes["inetsvc.bytes_received"], "7");
    assert_eq!(datagram.attributes["inetsvc.bytes_sent"], "7");
}

#[test]
fn sampling_off_sends_no_spans_and_udp_is_off_by_default() {
    let receiver = Receiver::http();
    let server = Server::start(
        ECHOD,
        &[
            "--otlp-endpoint",
            &receiver.endpoint,
            "--trace-sample-ratio",
            "0",
        ],
    );
    for _ in 0..5 {
        echo_once(&server, b"unsampled");
    }
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    client.send_to(b"x", server.udp()).unwrap();
    client.recv_from(&mut [0u8; 4]).unwrap();
    // The batch processor exports every second: wait for two rounds.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(receiver.spans().is_empty(), "{:?}", receiver.spans());
}

/// Serves 200 ECHO exchanges and SIGTERMs the server; returns how long the exchanges
/// took and how long the exit took.
fn serve_then_stop(mut server: Server) -> (Duration, Duration) {
    let started = Instant::now();
    for _ in 0..200 {
        echo_once(&server, b"is anyone collecting?");
    }
    let serving = started.elapsed();
    let signalled = Instant::now();
    server.signal("TERM");
    let status = server
        .wait_exit(Duration::from_secs(20))
        .expect("exits despite the collector");
    assert_eq!(status.code(), Some(0));
    (serving, signalled.elapsed())
}

#[test]
fn a_collector_that_is_down_costs_nothing_and_is_counted() {
    let closed = format!("http://127.0.0.1:{}", inetsvc_testkit::free_port());
    let server = Server::start(ECHOD, &["--otlp-endpoint", &closed, "--otlp-timeout", "1s"]);
    // Let an export fail before stopping, so the drop is counted.
    for _ in 0..10 {
        echo_once(&server, b"early");
    }
    server.wait_metric(
        "inetsvc_trace_spans_dropped_total{reason=\"export_failed\",service=\"echo\"}",
        1.0,
        Duration::from_secs(10),
    );
    let (serving, stopping) = serve_then_stop(server);
    assert!(
        serving < Duration::from_secs(5),
        "200 exchanges took {serving:?}"
    );
    assert!(stopping < Duration::from_secs(6), "exit took {stopping:?}");
}

#[test]
fn a_black_holed_collector_neither_slows_serving_nor_holds_the_exit() {
    let hole = black_hole();
    let server = Server::start(ECHOD, &["--otlp-endpoint", &hole, "--otlp-timeout", "30s"]);
    let (serving, stopping) = serve_then_stop(server);
    assert!(
        serving < Duration::from_secs(5),
        "200 exchanges took {serving:?}"
    );
    // The flush at exit is bounded (3 s) although one export may wait 30 s.
    assert!(stopping < Duration::from_secs(8), "exit took {stopping:?}");
}

#[test]
fn a_full_export_queue_drops_and_counts_instead_of_growing() {
    let hole = black_hole();
    let server = Server::start(
        ECHOD,
        &[
            "--otlp-endpoint",
            &hole,
            "--otlp-timeout",
            "30s",
            "--otlp-queue-size",
            "16",
        ],
    );
    for _ in 0..100 {
        echo_once(&server, b"q");
    }
    server.wait_metric(
        "inetsvc_trace_spans_dropped_total{reason=\"queue_full\",service=\"echo\"}",
        50.0,
        Duration::from_secs(10),
    );
}
