#!/usr/bin/env python3
"""The Grafana dashboard as code: writes deploy/grafana/dashboards/inetsvc.json (which the
compose stack provisions and deploy/k8s/generate-monitoring copies for Kubernetes). With
--check, writes nothing and exits 1 if the committed JSON differs.

What it shows, per service: RED (request rate, error ratio, answer latency), the latency
SLO (slow answers, burn rate, budget left), USE for the process (CPU, memory, file
descriptors, the rate limiter's table), the protections at work, and the outside view
(the prober). Every query honours the namespace, job, service and instance variables; none
returns NaN on an idle stack (ratios have a floor under their denominators, quantiles
exist only where answers do)."""

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "dashboards" / "inetsvc.json"
RUNBOOKS = "https://github.com/inetsvc/inetsvc/blob/main/docs/runbooks.md"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# Selectors every query starts from. Raw series: job and instance matchers, as Grafana's
# dashboard linter asks (target-job-rule, target-instance-rule). Recording rules keep no
# job (and the per-service ones no instance), the prober's series carry the prober's own
# job and instance: deploy/grafana/dashboard-lint.yml names those exclusions and why.
SVC = 'namespace=~"$namespace",job=~"$job",service=~"$service",instance=~"$instance"'
RULE_INSTANCE = 'namespace=~"$namespace",service=~"$service",instance=~"$instance"'
RULE_SERVICE = 'namespace=~"$namespace",service=~"$service"'
PROBE = 'namespace=~"$namespace",job="inetsvc-probe",service=~"$service"'
IO_ERRORS = 'kind=~"accept|read|write|receive|send|reset"'
# Process metrics carry no service label: select them by job and instance, and join them
# to build_info for the service.
PROCESS = 'namespace=~"$namespace",job=~"$job",instance=~"$instance"'
BY_SERVICE = ('* on (instance) group_left (service) group by (instance, service) '
              '(inetsvc_build_info{' + SVC + '})')


def target(expr, legend, ref="A"):
    return {"refId": ref, "expr": expr, "legendFormat": legend, "datasource": DATASOURCE}


def panel(kind, title, description, grid, targets, unit="short", **extra):
    body = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": dict(zip("xywh", grid)),
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [target(*t, ref=chr(65 + i)) for i, t in enumerate(targets)],
    }
    for key, value in extra.items():
        if key in ("thresholds", "mappings", "min", "max", "decimals"):
            body["fieldConfig"]["defaults"][key] = value
        else:
            body[key] = value
    return body


def steps(*pairs):
    """Threshold steps: (color, from value), the first from -infinity."""
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for c, v in pairs]}


def stat(title, description, grid, targets, unit, thresholds, mappings=None):
    extra = {"thresholds": thresholds,
             "options": {"colorMode": "background", "graphMode": "none",
                         "reduceOptions": {"calcs": ["lastNotNull"]}}}
    if mappings:
        extra["mappings"] = mappings
    return panel("stat", title, description, grid, targets, unit, **extra)


def row(title, y):
    return {"type": "row", "title": title, "collapsed": False,
            "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}, "panels": []}


def quantiles(metric, by="service"):
    """p50/p90/p99 of a histogram, present only where it has observations (no NaN)."""
    seen = f"sum by ({by}) (rate({metric}_count{{{SVC}}}[$__rate_interval])) > 0"
    return [(f"histogram_quantile({q}, sum by ({by}, le) (rate({metric}_bucket{{{SVC}}}[$__rate_interval]))) "
             f"and on ({by}) ({seen})", f"{{{{{by}}}}} p{int(q * 100)}") for q in (0.5, 0.9, 0.99)]


def slow_ratio(window):
    return f'namespace_service:inetsvc_answers_slow:ratio_rate{window}{{{RULE_SERVICE}}}'


def panels():
    p = []
    p.append(row("Health", 0))
    p.append(stat("Targets up", "1 when Prometheus can scrape the instance's admin port (InetsvcServiceDown).",
                  (0, 1, 6, 4), [(f'up{{{PROCESS}}}', "{{instance}}")],
                  "short", steps(("red", None), ("green", 1)),
                  [{"type": "value", "options": {"0": {"text": "DOWN", "color": "red"},
                                                 "1": {"text": "UP", "color": "green"}}}]))
    p.append(stat("Requests / s (all)", "Requests served per second by the selected services: TCP connections accepted and datagrams answered. 0 on an idle stack is healthy.",
                  (6, 1, 6, 4), [(f"sum(rate(inetsvc_requests_total{{{SVC}}}[$__rate_interval]))", "requests/s")],
                  "reqps", steps(("blue", None))))
    p.append(stat("I/O error ratio", "Requests that end in an accept, read, write, receive or send error or a reset, of all requests (InetsvcErrorRateHigh at 5% on one instance).",
                  (12, 1, 6, 4),
                  [(f"sum(rate(inetsvc_errors_total{{{SVC},{IO_ERRORS}}}[$__rate_interval])) / clamp_min(sum(rate(inetsvc_requests_total{{{SVC}}}[$__rate_interval])), 0.1)", "errors")],
                  "percentunit", steps(("green", None), ("orange", 0.01), ("red", 0.05))))
    p.append(stat("Refused + dropped / s", "TCP connections refused by a cap plus datagrams dropped by the loop guard, a rate limit or a fault: 0 is green, anything refused is red.",
                  (18, 1, 6, 4),
                  [(f"sum(rate(inetsvc_connections_rejected_total{{{SVC}}}[$__rate_interval])) + sum(rate(inetsvc_datagrams_dropped_total{{{SVC}}}[$__rate_interval]))", "refused + dropped")],
                  "reqps", steps(("green", None), ("red", 0.001))))

    p.append(row("Rate, errors, answer latency", 5))
    p.append(panel("timeseries", "Requests / s by service and transport", "The recording rule namespace_service_transport:inetsvc_requests:rate5m (5-minute rates, every instance of a service).",
                   (0, 6, 8, 8), [(f'sum by (service, transport) (namespace_service_transport:inetsvc_requests:rate5m{{{RULE_SERVICE}}})', "{{service}} {{transport}}")],
                   "reqps"))
    p.append(panel("timeseries", "I/O error ratio, worst instance", "namespace_service_instance_transport:inetsvc_io_errors:ratio_rate5m, the ratio InetsvcErrorRateHigh reads (5%), the worst instance of each service and transport.",
                   (8, 6, 8, 8), [(f'max by (service, transport) (namespace_service_instance_transport:inetsvc_io_errors:ratio_rate5m{{{RULE_INSTANCE}}})', "{{service}} {{transport}}")],
                   "percentunit", min=0))
    p.append(panel("timeseries", "Answer latency quantiles", "Accept (TCP: DAYTIME, TIME) or receipt (UDP) to the answer handed to the kernel: what the service takes. The SLO's threshold is 100 ms.",
                   (16, 6, 8, 8), quantiles("inetsvc_answer_duration_seconds"), "s"))

    p.append(row("Latency SLO: 99% of answers within 100 ms", 14))
    p.append(panel("timeseries", "Slow answers (over 100 ms)", "Share of answers over 100 ms, over 5 minutes and 1 hour (the recording rules the burn-rate alerts read); the objective allows 1%.",
                   (0, 15, 8, 8), [(slow_ratio("5m"), "{{service}} 5m"), (slow_ratio("1h"), "{{service}} 1h")],
                   "percentunit", min=0))
    p.append(panel("timeseries", "Burn rate (1 h)", "How many times faster than sustainable the error budget burns, over the last hour: InetsvcLatencySLOBurn pages at 14.4 (with the 5-minute rate) and at 6 over 6 hours.",
                   (8, 15, 8, 8), [(f"{slow_ratio('1h')} / 0.01", "{{service}}")],
                   "none", min=0, thresholds=steps(("green", None), ("orange", 6), ("red", 14.4))))
    budget = ("1 - (sum by (service) (increase(inetsvc_answer_duration_seconds_count{" + SVC + "}[30d]))"
              " - sum by (service) (increase(inetsvc_answer_duration_seconds_bucket{" + SVC + ',le="0.1"}[30d])))'
              " / clamp_min(sum by (service) (increase(inetsvc_answer_duration_seconds_count{" + SVC + "}[30d])), 1) / 0.01")
    p.append(stat("Error budget left (30 days)", "The month's allowance of slow answers (1%) not yet spent, over the data kept (compose keeps 2 days): 100% on an idle or fast service, below 0 when the objective is missed.",
                  (16, 15, 8, 8), [(budget, "{{service}}")], "percentunit",
                  steps(("red", None), ("orange", 0), ("green", 0.25))))

    p.append(row("Traffic", 23))
    p.append(panel("timeseries", "Active TCP connections (of cap)", "Connections being served and max_connections in force (InetsvcConnectionsNearCap at 80%).",
                   (0, 24, 8, 8), [(f"sum by (service) (inetsvc_connections_active{{{SVC}}})", "{{service}} active"),
                                   (f"sum by (service) (inetsvc_connections_max{{{SVC}}})", "{{service}} cap")]))
    p.append(panel("timeseries", "Connection duration quantiles", "Accept to close of TCP connections, the client's pace and the close linger included: how long clients stay, not how fast the service answers.",
                   (8, 24, 8, 8), quantiles("inetsvc_connection_duration_seconds"), "s"))
    p.append(panel("timeseries", "Bytes / s", "Payload received (up) and sent (down) by service and transport.",
                   (16, 24, 8, 8), [(f"sum by (service, transport) (rate(inetsvc_bytes_received_total{{{SVC}}}[$__rate_interval]))", "{{service}} {{transport}} in"),
                                    (f"-sum by (service, transport) (rate(inetsvc_bytes_sent_total{{{SVC}}}[$__rate_interval]))", "{{service}} {{transport}} out")],
                   "Bps"))

    p.append(row("Protection and errors", 32))
    p.append(panel("timeseries", "TCP connections refused by reason", "global_cap: max_connections full; per_source_cap: max_connections_per_source (InetsvcConnectionsRejected).",
                   (0, 33, 8, 8), [(f"sum by (service, reason) (rate(inetsvc_connections_rejected_total{{{SVC}}}[$__rate_interval]))", "{{service}} {{reason}}")],
                   "reqps"))
    p.append(panel("timeseries", "Datagrams dropped by reason", "Loop guard (loop_port, not_unicast), rate limits (rate_limit_source, rate_limit_global), faults (InetsvcUdpLoopGuardDrops, InetsvcUdpRateLimited).",
                   (8, 33, 8, 8), [(f"sum by (service, reason) (rate(inetsvc_datagrams_dropped_total{{{SVC}}}[$__rate_interval]))", "{{service}} {{reason}}")],
                   "reqps"))
    p.append(panel("timeseries", "Errors and timeouts by kind", "I/O errors and the timeouts that protect the service (idle, write, max duration) by kind (InetsvcErrorRateHigh, InetsvcTimeoutsHigh).",
                   (16, 33, 8, 8), [(f"sum by (service, kind) (rate(inetsvc_errors_total{{{SVC}}}[$__rate_interval]))", "{{service}} {{kind}}")],
                   "reqps"))

    p.append(row("Process (utilisation, saturation)", 41))
    p.append(panel("timeseries", "CPU (cores)", "CPU seconds per second by instance.",
                   (0, 42, 6, 8), [(f'rate(process_cpu_seconds_total{{{PROCESS}}}[$__rate_interval]) {BY_SERVICE}', "{{service}} {{instance}}")]))
    p.append(panel("timeseries", "Resident memory", "Resident set size by instance; the container limit covers every connection busy at once.",
                   (6, 42, 6, 8), [(f'process_resident_memory_bytes{{{PROCESS}}} {BY_SERVICE}', "{{service}} {{instance}}")],
                   "bytes"))
    p.append(panel("timeseries", "Open file descriptors (of limit)", "Descriptors open and the process limit (InetsvcFileDescriptorsNearLimit at 80%).",
                   (12, 42, 6, 8), [(f'process_open_fds{{{PROCESS}}} {BY_SERVICE}', "{{service}} {{instance}} open"),
                                    (f'process_max_fds{{{PROCESS}}} {BY_SERVICE}', "{{service}} {{instance}} limit")]))
    p.append(panel("timeseries", "UDP rate limiter sources (of bound)", "Sources the per-source rate limiter tracks, and its bound (udp_limiter_sources): at the bound, refilled sources are forgotten first.",
                   (18, 42, 6, 8), [(f"max by (service) (inetsvc_udp_rate_limiter_sources{{{SVC}}})", "{{service}} tracked"),
                                    (f'max by (service) (inetsvc_config_limit{{{SVC},limit="udp_limiter_sources"}})', "{{service}} bound")]))

    p.append(row("Outside view, traces and training", 50))
    p.append(panel("timeseries", "Probe success (prober, as clients see it)", "inetsvc probe --listen asks every service over TCP and UDP on each scrape: 1 = correct answer (InetsvcProbeFailing; a wrong clock is InetsvcClockSkew).",
                   (0, 51, 6, 8), [(f"min by (service, transport) (inetsvc_probe_success{{{PROBE}}})", "{{service}}/{{transport}}")],
                   "none", min=0, max=1))
    p.append(panel("timeseries", "Probe answer time", "Round-trip time of each check's exchange, seen from the prober.",
                   (6, 51, 6, 8), [(f"max by (service, transport) (inetsvc_probe_duration_seconds{{{PROBE}}})", "{{service}}/{{transport}}")],
                   "s"))
    p.append(panel("timeseries", "Clock skew seen by the prober", "Server clock minus the prober's, DAYTIME and TIME (InetsvcClockSkew beyond the prober's tolerance).",
                   (12, 51, 6, 8), [(f"max by (service, transport) (inetsvc_probe_clock_skew_seconds{{{PROBE}}})", "{{service}}/{{transport}}")],
                   "s"))
    p.append(panel("timeseries", "Trace spans exported / dropped", "Spans the OTLP collector accepted, and dropped ones by reason (InetsvcTraceExportFailing).",
                   (18, 51, 6, 8), [(f'sum by (service) (rate(inetsvc_trace_spans_exported_total{{{SVC}}}[$__rate_interval]))', "{{service}} exported"),
                                    (f'sum by (service, reason) (rate(inetsvc_trace_spans_dropped_total{{{SVC}}}[$__rate_interval]))', "{{service}} dropped {{reason}}")],
                   "short"))
    p.append(panel("timeseries", "Health checks (1 = passing)", "What /healthz (liveness) and /readyz (readiness) answer (InetsvcLivenessFailing, InetsvcNotReady).",
                   (0, 59, 12, 8), [(f"min by (service, check) (inetsvc_health{{{SVC}}})", "{{service}} {{check}}")],
                   "none", min=0, max=1))
    p.append(stat("Faults injected", "Faults set on purpose (training; docs/faults.md). Which ones: the InetsvcFaultInjected alert, or inetsvc fault --admin HOST:PORT list.",
                  (12, 59, 12, 8), [(f"sum by (service) (inetsvc_fault_active{{{SVC}}})", "{{service}}")],
                  "none", steps(("green", None), ("orange", 1))))
    for number, each in enumerate(p, start=1):
        each["id"] = number
    return p


def variable(name, label, query):
    return {"name": name, "label": label, "type": "query", "datasource": DATASOURCE,
            "query": {"query": query, "refId": name}, "definition": query,
            "includeAll": True, "multi": True, "allValue": ".*",
            "current": {"text": "All", "value": "$__all"}, "refresh": 2}


def dashboard():
    return {
        "uid": "inetsvc-overview",
        "title": "inetsvc — service set",
        "description": "ECHO, DAYTIME and TIME: rate, errors and answer latency per service, the latency SLO, the process, the protections and the prober's outside view.",
        "tags": ["inetsvc"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-30m", "to": "now"},
        "editable": False,
        "annotations": {"list": []},
        "links": [{"title": "Runbooks", "url": RUNBOOKS, "type": "link", "targetBlank": True}],
        "templating": {"list": [
            # Whatever the Prometheus data source is called in this Grafana.
            {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
             "current": {}, "hide": 0, "refresh": 1},
            variable("namespace", "Namespace", "label_values(inetsvc_build_info, namespace)"),
            variable("job", "Job", 'label_values(inetsvc_build_info{namespace=~"$namespace"}, job)'),
            variable("service", "Service", 'label_values(inetsvc_build_info{namespace=~"$namespace",job=~"$job"}, service)'),
            variable("instance", "Instance", 'label_values(inetsvc_build_info{namespace=~"$namespace",job=~"$job",service=~"$service"}, instance)'),
        ]},
        "panels": panels(),
    }


def main():
    text = json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"
    if "--check" in sys.argv[1:]:
        if OUT.read_text() != text:
            print(f"{OUT.name} is out of date: run deploy/grafana/dashboard.py")
            sys.exit(1)
        print(f"{OUT.name} agrees with deploy/grafana/dashboard.py")
        return
    OUT.write_text(text)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
