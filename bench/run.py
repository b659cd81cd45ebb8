#!/usr/bin/env python3
"""The inetsvc benchmark: side by side, in one run, on loopback.

Servers, all started once and measured in rotating order every round:
  A  inetsvc with its defaults (metrics on, spans sampled but not exported), the caps and
     rate limits lifted (the load comes from one address)
  A' the same binaries again, a second instance: the A/A control that shows the noise
  Z  bare-inetd (bench/baseline): a bare tokio server sharing no code with inetsvc, the
     independent baseline
  X  Debian's xinetd, internal services: the peer to beat
  H  inetsvc with `tcp_concurrency = threaded` (ECHO over TCP only)
  B  inetsvc with metrics and tracing off (ECHO 16 connections and TIME only)
  N, T, D  tracing off / every connection traced and exported / collector down
           (ECHO 16 connections and TIME only)
  L  inetsvc with `close_linger = 0s` (DAYTIME and TIME only): the cost of the graceful
     close

Workloads (each bounded by --seconds): ECHO over TCP at 1, 16, 256 and 1,000 connections
(512 B, closed loop), ECHO over UDP (16 flows), DAYTIME and TIME connections per second
(16 workers). Server CPU is counted per process tree, in a cpuacct cgroup per server
(so xinetd's forked children count), falling back to the process and its reaped
children. Then syscalls per message of each server (strace -c -f), user-space
instructions per message (callgrind) of A and Z, RSS per idle connection at 10,000 held
connections, start-to-ready time and binary sizes. Medians of --repeat rounds.

Writes JSON results and the Markdown report (docs/benchmarks.md by default), to which
bench/notes.md, the hand-written analysis, is appended. Stops only what it started, by
PID. Traffic goes to 127.0.0.1 only.
"""

import argparse
import http.server
import json
import threading
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RELEASE = ROOT / "target" / "release"
SERVICES = [("echo", "echod"), ("daytime", "daytimed"), ("time", "timed")]
# Limits lifted for a load that comes from one address: the benchmark measures serving
# capacity, not the limiter (which is measured in the tests). The per-source cap (64) and
# the UDP rate limits (500/s per source, 50,000/s in all) are on by default: a benchmark
# from one address must lift them, as here.
LOAD_FLAGS = [
    "--max-connections", "19000",
    "--max-connections-per-source", "19000",
    "--udp-rate-per-source", "0",
    "--udp-rate-global", "0",
    "--idle-timeout", "10m",
]
STARTED = []  # every process this run started, stopped by PID at exit
CGROUPS = []  # every cgroup this run made, removed at exit
AA = "A'"  # the second instance of A: the A/A control
CPUACCT = Path("/sys/fs/cgroup/cpuacct")


def free_port():
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue


def wait_ready(admin, limit=20.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/readyz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.005)
    raise RuntimeError(f"admin port {admin} never became ready")


def start_inetsvc(extra):
    """Starts the three services; returns {service: (tcp_udp_port, pid, admin_port)}."""
    servers = {}
    for name, binary in SERVICES:
        port, admin = free_port(), free_port()
        listen = f"127.0.0.1:{port}"
        proc = subprocess.Popen(
            [str(RELEASE / binary), "--tcp-listen", listen, "--udp-listen", listen,
             "--admin-listen", f"127.0.0.1:{admin}", "--log-level", "warn", *LOAD_FLAGS, *extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        STARTED.append(proc)
        wait_ready(admin)
        servers[name] = (port, proc.pid, admin)
    return servers


class Sink(http.server.BaseHTTPRequestHandler):
    """An OTLP/HTTP collector that accepts every export and keeps nothing."""
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def start_sink():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


def start_xinetd(workdir):
    ports = {name: free_port() for name, _ in SERVICES}
    config = ["defaults\n{\n    instances = UNLIMITED\n    per_source = UNLIMITED\n    cps = 1000000 1\n}\n"]
    for name, port in ports.items():
        for kind, proto, wait in (("stream", "tcp", "no"), ("dgram", "udp", "yes")):
            config.append(
                f"service {name}\n{{\n    type = INTERNAL UNLISTED\n    id = {name}-{kind}\n"
                f"    socket_type = {kind}\n    protocol = {proto}\n    port = {port}\n"
                f"    bind = 127.0.0.1\n    user = root\n    wait = {wait}\n}}\n")
    path = Path(workdir) / "xinetd.conf"
    path.write_text("".join(config))
    proc = subprocess.Popen(["xinetd", "-dontfork", "-stayalive", "-f", str(path)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    STARTED.append(proc)
    for port in ports.values():
        wait_tcp(port)
    return {name: (port, proc.pid, None) for name, port in ports.items()}


def start_bare():
    """bare-inetd, one process per service; same shape as start_inetsvc's result."""
    servers = {}
    for name, _ in SERVICES:
        port = free_port()
        proc = subprocess.Popen([str(RELEASE / "bare-inetd"), f"{name}=127.0.0.1:{port}"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        STARTED.append(proc)
        wait_tcp(port)
        servers[name] = (port, proc.pid, None)
    return servers


def wait_tcp(port, limit=20.0):
    """Waits until something accepts TCP connections on 127.0.0.1:`port`."""
    deadline = time.monotonic() + limit
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on {port}")
            time.sleep(0.02)


def bench(target_port, mode, seconds, extra=()):
    cmd = [str(RELEASE / "inetsvc"), "bench", f"127.0.0.1:{target_port}", "--mode", mode,
           "-d", f"{seconds}s", "--json", "--timeout", "2s", *extra]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
    if not out.stdout.strip():
        raise RuntimeError(f"{' '.join(cmd)} failed: {out.stderr}")
    return json.loads(out.stdout)


# name: (service, bench mode, bench flags)
WORKLOADS = {
    "echo_tcp_1": ("echo", "echo-tcp", ["-c", "1", "--size", "512"]),
    "echo_tcp_16": ("echo", "echo-tcp", ["-c", "16", "--size", "512"]),
    "echo_tcp_256": ("echo", "echo-tcp", ["-c", "256", "--size", "512"]),
    "echo_tcp_1000": ("echo", "echo-tcp", ["-c", "1000", "--size", "512"]),
    "echo_udp_16": ("echo", "echo-udp", ["-c", "16", "--size", "512"]),
    "daytime_tcp": ("daytime", "connect", ["-c", "16", "--expect", "daytime"]),
    "time_tcp": ("time", "connect", ["-c", "16", "--expect", "time"]),
}
MAIN = ["A", AA, "Z", "X"]
# The variants measured on only some workloads.
PARTIAL = {
    "H": ("echo_tcp_1", "echo_tcp_16", "echo_tcp_256"),
    "B": ("echo_tcp_16", "time_tcp"),
    "N": ("echo_tcp_16", "time_tcp"),
    "T": ("echo_tcp_16", "time_tcp"),
    "D": ("echo_tcp_16", "time_tcp"),
    "L": ("daytime_tcp", "time_tcp"),
}


class CpuMeter:
    """CPU time of a server's whole process tree, in seconds: a cpuacct cgroup holding the
    server (its forked children are born into it), or, where cgroups cannot be made, the
    process's own time plus its reaped children's."""

    def __init__(self, pid, label):
        self.pid, self.group = pid, None
        if CPUACCT.is_dir() and os.access(CPUACCT, os.W_OK):
            group = CPUACCT / f"inetsvc-bench-{label.replace(chr(39), 'p')}-{pid}"
            try:
                group.mkdir()
                CGROUPS.append(group)
                (group / "cgroup.procs").write_text(f"{pid}\n")
                self.group = group
            except OSError:
                pass

    @property
    def how(self):
        return "cgroup" if self.group else "proc"

    def seconds(self):
        if self.group:
            return int((self.group / "cpuacct.usage").read_text()) / 1e9
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()
        return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def syscalls_per_request(pid, port, mode, extra, count):
    """strace -c -f attached to a server for a bounded load of `count` requests: the
    server's syscalls per request, by name (they do not drift with the machine's noise)."""
    if not shutil.which("strace"):
        return None
    out = tempfile.NamedTemporaryFile(prefix="inetsvc-strace-", delete=False).name
    tracer = subprocess.Popen(["strace", "-c", "-f", "-q", "-p", str(pid), "-o", out],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    STARTED.append(tracer)
    time.sleep(0.5)
    report = bench(port, mode, 60, [*extra, "-n", str(count)])
    time.sleep(0.3)
    tracer.send_signal(2)
    tracer.wait(timeout=30)
    calls = {}
    for line in Path(out).read_text().splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[-1] != "total" and parts[0][0].isdigit():
            calls[parts[-1]] = int(parts[3])
    os.unlink(out)
    done = report["requests"] or 1
    return {name: n / done for name, n in calls.items()}


def instructions_per_request(command, port, mode, extra, counts=(2000, 12000)):
    """User-space instructions per request (valgrind --tool=callgrind), the difference
    between two bounded loads, so that start-up and shutdown cancel out."""
    if not shutil.which("valgrind"):
        return None
    totals = []
    for count in counts:
        out = tempfile.mkdtemp(prefix="inetsvc-callgrind-")
        proc = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/cg.%p",
                                 *command], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        STARTED.append(proc)
        wait_tcp(port, limit=60)
        bench(port, mode, 120, [*extra, "-n", str(count)])
        proc.terminate()
        proc.wait(timeout=60)
        total = 0
        for path in Path(out).iterdir():
            match = re.search(r"^summary: (\d+)", path.read_text(errors="replace"), re.M)
            total += int(match.group(1)) if match else 0
            path.unlink()
        os.rmdir(out)
        totals.append(total)
    return (totals[1] - totals[0]) / (counts[1] - counts[0])


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def hold_rss(servers, count, seconds):
    """Server RSS per held idle ECHO connection, KiB."""
    port, pid, _ = servers["echo"]
    before = rss_kib(pid)
    cmd = [str(RELEASE / "inetsvc"), "bench", f"127.0.0.1:{port}", "--mode", "hold",
           "-c", str(count), "-d", f"{seconds}s", "--json", "--timeout", "5s"]
    client = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    STARTED.append(client)
    time.sleep(seconds * 0.8)
    during = rss_kib(pid)
    out, err = client.communicate(timeout=seconds + 60)
    report = json.loads(out) if out.strip() else {"held": 0}
    held = report.get("held", 0)
    return {"rss_before_kib": before, "rss_held_kib": during, "held": held,
            "per_connection_kib": (during - before) / held if held else None}


def fresh_hold(count):
    """RSS per idle connection of A and Z, each a process started for it: one that served
    the load rounds keeps their memory, which the held connections would reuse unseen."""
    return {"A": hold_rss(start_inetsvc([]), count, 10), "Z": hold_rss(start_bare(), count, 10)}


def start_to_ready(extra, repeat=5):
    times = []
    for _ in range(repeat):
        port, admin = free_port(), free_port()
        begin = time.monotonic()
        proc = subprocess.Popen(
            [str(RELEASE / "echod"), "--tcp-listen", f"127.0.0.1:{port}", "--udp-listen",
             f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin}", *extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        STARTED.append(proc)
        wait_ready(admin)
        times.append((time.monotonic() - begin) * 1000)
        proc.terminate()
        proc.wait(timeout=30)
    return statistics.median(times)


DESIGNS = ["iterative", "concurrent", "threaded", "single-thread"]
DESIGNS_BEGIN = "<!-- bench/run --designs: begin -->"
DESIGNS_END = "<!-- bench/run --designs: end -->"


def time_wait(port):
    """Sockets in TIME-WAIT on the server side of `port`."""
    out = subprocess.run(["ss", "-Htan", "state", "time-wait", f"( sport = :{port} )"],
                         capture_output=True, text=True).stdout
    return len([line for line in out.splitlines() if line.strip()])


def stuck_wait(port):
    """Seconds a normal ECHO client waits behind one client that never sends."""
    stuck = socket.create_connection(("127.0.0.1", port))
    time.sleep(0.1)
    begin = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(b"next")
        client.recv(4)
    stuck.close()
    return time.monotonic() - begin


def designs(args):
    """Every server design measured side by side; writes the table into
    docs/server-designs.md between its markers."""
    servers = {}
    for design in DESIGNS:
        flags = ["--tcp-concurrency", design, "--idle-timeout", "3s"]
        servers[design] = start_inetsvc(flags)
    results = {d: {"echo_1": [], "echo_16": [], "time_16": [], "tw": []} for d in DESIGNS}
    for rep in range(args.repeat):
        rotated = DESIGNS[rep % len(DESIGNS):] + DESIGNS[:rep % len(DESIGNS)]
        for design in rotated:
            echo, time_port = servers[design]["echo"][0], servers[design]["time"][0]
            results[design]["echo_1"].append(bench(echo, "echo-tcp", args.seconds, ["-c", "1", "--size", "512"]))
            results[design]["echo_16"].append(bench(echo, "echo-tcp", args.seconds, ["-c", "16", "--size", "512"]))
            results[design]["time_16"].append(bench(time_port, "connect", args.seconds, ["-c", "16", "--expect", "time"]))
            results[design]["tw"].append(time_wait(time_port))
            print(f"round {rep + 1} {design:13} echo1 {results[design]['echo_1'][-1]['throughput_per_second']:>9.0f}/s "
                  f"echo16 {results[design]['echo_16'][-1]['throughput_per_second']:>9.0f}/s "
                  f"time {results[design]['time_16'][-1]['throughput_per_second']:>7.0f}/s "
                  f"TIME_WAIT {results[design]['tw'][-1]}", flush=True)
    # Held for less than the idle timeout, so that none is closed before it is counted;
    # the iterative design holds one connection at a time (the rest wait unaccepted).
    rss = {d: hold_rss(servers[d], 1000, 2.4)["per_connection_kib"] for d in DESIGNS if d != "iterative"}
    stuck = {d: stuck_wait(servers[d]["echo"][0]) for d in DESIGNS}
    med = lambda d, w, f=lambda r: r["throughput_per_second"]: statistics.median(f(r) for r in results[d][w])
    p99 = lambda r: r["latency_us"]["p99"]
    errors = lambda r: sum(r["errors"].values())
    lines = [DESIGNS_BEGIN, "",
             f"Measured by `bench/run --designs` on {os.cpu_count()} cores, loopback, load generator on the same "
             f"cores; {args.repeat} rounds of {args.seconds:g} s in rotating order, medians. RSS per "
             "connection at 1,000 held idle connections; the stuck-client wait is how long a normal "
             "ECHO client waits behind one that connected and sent nothing (idle timeout 3 s).", "",
             "| design | ECHO 1 conn msg/s | p99 µs | ECHO 16 conn msg/s | p99 µs | errors (16) | TIME conn/s | TIME_WAIT after | RSS KiB/conn | stuck-client wait |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for d in DESIGNS:
        per = rss.get(d)
        shown = "one at a time" if d == "iterative" else (f"{per:.1f}" if per is not None else "hold failed")
        lines.append(
            f"| {d} | {med(d, 'echo_1'):,.0f} | {med(d, 'echo_1', p99):,.0f} | {med(d, 'echo_16'):,.0f} | "
            f"{med(d, 'echo_16', p99):,.0f} | {med(d, 'echo_16', errors):,.0f} | {med(d, 'time_16'):,.0f} | "
            f"{statistics.median(results[d]['tw']):,.0f} | {shown} | {stuck[d]:.2f} s |")
    lines += ["", DESIGNS_END]
    path = ROOT / "docs" / "server-designs.md"
    text = path.read_text()
    begin, end = text.index(DESIGNS_BEGIN), text.index(DESIGNS_END) + len(DESIGNS_END)
    path.write_text(text[:begin] + "\n".join(lines) + text[end:])
    print(f"table written into {path}")


def median_of(results, variant, workload, field):
    values = [r[field] for r in results[variant][workload]]
    return statistics.median(values) if values else float("nan")


def ratio(a, b):
    return a / b if b else float("nan")


def paired(results, variant, base, workload, value):
    """Median over rounds of variant/base, each ratio taken within one round: the two were
    measured a few seconds apart, so drift of the machine between rounds cancels out."""
    ratios = [ratio(value(a), value(b))
              for a, b in zip(results[variant][workload], results[base][workload])]
    return statistics.median(ratios) if ratios else float("nan")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2,
                        help="length of each measurement (short rounds keep each round within one phase of a noisy machine)")
    parser.add_argument("--repeat", type=int, default=5, help="rounds (at least 3)")
    parser.add_argument("--hold", type=int, default=10000, help="idle connections to hold")
    parser.add_argument("--report", default=str(ROOT / "docs" / "benchmarks.md"))
    parser.add_argument("--json", default=str(ROOT / "target" / "bench-results.json"))
    parser.add_argument("--designs", action="store_true",
                        help="measure the server designs instead; writes the table in docs/server-designs.md")
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite the report from the JSON results of the last run")
    parser.add_argument("--hold-only", action="store_true",
                        help="measure only the memory at --hold idle connections again, into the last run's results")
    args = parser.parse_args()
    if args.report_only:
        write_report(Path(args.report), json.loads(Path(args.json).read_text()))
        return
    if args.hold_only:
        raw = json.loads(Path(args.json).read_text())
        raw["hold"] = fresh_hold(args.hold)
        Path(args.json).write_text(json.dumps(raw, indent=1))
        write_report(Path(args.report), raw)
        return
    if args.repeat < 3:
        parser.error("--repeat must be at least 3: medians of fewer say little")
    if args.designs:
        designs(args)
        return

    workdir = tempfile.mkdtemp(prefix="inetsvc-bench-")
    down = f"http://127.0.0.1:{free_port()}"
    variants = {
        "A": start_inetsvc([]),
        "A'": start_inetsvc([]),
        "Z": start_bare(),
        "X": start_xinetd(workdir),
        "H": start_inetsvc(["--tcp-concurrency", "threaded"]),
        "B": start_inetsvc(["--metrics", "false", "--tracing", "false"]),
        "N": start_inetsvc(["--tracing", "false"]),
        "T": start_inetsvc(["--otlp-endpoint", start_sink(), "--trace-sample-ratio", "1"]),
        "D": start_inetsvc(["--otlp-endpoint", down, "--trace-sample-ratio", "1"]),
        "L": start_inetsvc(["--close-linger", "0s"]),
    }
    # One meter per process: xinetd serves all three services from one process tree.
    by_pid, meters = {}, {}
    for v, servers in variants.items():
        for name, (_, pid, _) in servers.items():
            if pid not in by_pid:
                by_pid[pid] = CpuMeter(pid, f"{v}-{name}")
            meters.setdefault(v, {})[name] = by_pid[pid]
    order = list(variants)
    results = {v: {w: [] for w in WORKLOADS} for v in variants}
    for rep in range(args.repeat):
        rotated = order[rep % len(order):] + order[:rep % len(order)]
        for workload, (service, mode, extra) in WORKLOADS.items():
            for variant in rotated:
                if variant in PARTIAL and workload not in PARTIAL[variant]:
                    continue
                port = variants[variant][service][0]
                meter = meters[variant][service]
                cpu = meter.seconds()
                report = bench(port, mode, args.seconds, extra)
                cpu = meter.seconds() - cpu
                # Server CPU per answer: what the server costs, whatever share of the two
                # cores the load generator leaves it.
                report["server_cpu_us_per_request"] = (
                    cpu * 1e6 / report["requests"] if report["requests"] else None)
                results[variant][workload].append(report)
                print(f"round {rep + 1} {workload:13} {variant:2} "
                      f"{report['throughput_per_second']:>10.0f}/s p99 {report['latency_us']['p99']} µs "
                      f"cpu {report['server_cpu_us_per_request'] or 0:.2f} µs "
                      f"lost {report['lost']} errors {report['errors']}", flush=True)

    syscalls = {}
    for variant in ("A", "Z", "X", "H"):
        for workload, count in (("echo_tcp_16", 20000), ("echo_udp_16", 20000), ("time_tcp", 3000)):
            if variant == "H" and workload != "echo_tcp_16":
                continue
            if variant == "X" and workload == "echo_udp_16":
                count = 500  # xinetd's internal datagram echo answers a few hundred a second
            service, mode, extra = WORKLOADS[workload]
            port, pid, _ = variants[variant][service]
            syscalls.setdefault(variant, {})[workload] = syscalls_per_request(pid, port, mode, extra, count)
            print(f"syscalls {variant} {workload}: {sum((syscalls[variant][workload] or {}).values()):.2f}", flush=True)

    instructions = {}
    for variant in ("A", "Z"):
        for workload in ("echo_tcp_16", "time_tcp"):
            service, mode, extra = WORKLOADS[workload]
            port = free_port()
            binary = dict(SERVICES)[service]
            command = ([str(RELEASE / binary), "--tcp-listen", f"127.0.0.1:{port}", "--udp-listen",
                        f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{free_port()}",
                        "--log-level", "warn", "--drain-delay", "0s", "--shutdown-timeout", "2s",
                        *LOAD_FLAGS] if variant == "A"
                       else [str(RELEASE / "bare-inetd"), f"{service}=127.0.0.1:{port}"])
            instructions.setdefault(variant, {})[workload] = instructions_per_request(
                command, port, mode, extra, (2000, 12000) if workload == "echo_tcp_16" else (300, 1800))
            print(f"instructions {variant} {workload}: {instructions[variant][workload]:.0f}", flush=True)

    hold = fresh_hold(args.hold)
    ready = {"A": start_to_ready([]), "B": start_to_ready(["--metrics", "false", "--tracing", "false"])}
    sizes = {b: (RELEASE / b).stat().st_size for b in ("echod", "daytimed", "timed", "inetsvc", "bare-inetd")}
    how = sorted({m.how for per in meters.values() for m in per.values()})
    raw = {"results": results, "hold": hold, "ready_ms": ready, "sizes": sizes,
           "syscalls": syscalls, "instructions": instructions, "cpu_counted_by": how,
           "seconds": args.seconds, "repeat": args.repeat}
    Path(args.json).write_text(json.dumps(raw, indent=1))
    write_report(Path(args.report), raw)
    print(f"report: {args.report}")


NAMES = {
    "A": "inetsvc, defaults (limits lifted)",
    AA: "A again (A/A control)",
    "Z": "bare-inetd (independent baseline)",
    "X": "xinetd, internal services",
    "H": "inetsvc, `tcp_concurrency = threaded`",
    "B": "inetsvc, metrics and tracing off",
    "N": "inetsvc, tracing off",
    "T": "inetsvc, every connection traced and exported",
    "D": "inetsvc, every connection traced, collector down",
    "L": "inetsvc, `close_linger = 0s`",
}


def write_report(path, raw):
    results, hold, ready, sizes = raw["results"], raw["hold"], raw["ready_ms"], raw["sizes"]
    med = lambda v, w, f="throughput_per_second": median_of(results, v, w, f)
    rate = lambda r: r["throughput_per_second"]
    tail = lambda r: r["latency_us"]["p99"]
    cpu_of = lambda r: r.get("server_cpu_us_per_request") or float("nan")
    pr = lambda v, b, w, value=rate: paired(results, v, b, w, value)
    p99 = lambda v, w: statistics.median(r["latency_us"]["p99"] for r in results[v][w])
    loss = lambda v, w: statistics.median(r["loss_ratio"] for r in results[v][w])
    errors = lambda v, w: sum(sum(r["errors"].values()) for r in results[v][w])
    cpu = lambda v, w: statistics.median(cpu_of(r) for r in results[v][w])
    has = lambda v, w: bool(results.get(v, {}).get(w))
    counted = " and ".join(raw.get("cpu_counted_by", ["proc"]))
    lines = [
        "# Benchmarks",
        "",
        "Written by `bench/run` (do not edit by hand; the analysis at the end comes from "
        "`bench/notes.md`).",
        "",
        f"Machine: {os.cpu_count()} cores, {platform.machine()}, Linux {platform.release()}; "
        f"load generator (`inetsvc bench`) and servers share the cores, on loopback. "
        f"{raw['repeat']} rounds of {raw['seconds']:g} s per measurement, server order rotated "
        "every round; figures are medians, ratios are medians of per-round ratios (each pair "
        "measured seconds apart, so slow drift of the machine cancels out).",
        "",
        "Server CPU is counted per process tree: "
        + ("each server in its own cpuacct cgroup, so xinetd's forked children count with it"
           if counted == "cgroup" else f"({counted}) the process and its reaped children")
        + "; it is what each server itself costs, whatever share of the two cores the load "
        "generator leaves it.",
        "",
        "| variant | what |", "| --- | --- |",
    ]
    lines += [f"| **{v}** | {NAMES[v]} |" for v in NAMES if v in results]
    lines += ["", "## Throughput (median per second)", "",
              "| workload | A | A' | Z | X | H | A'/A (noise) | A/Z | A/X | H/X |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    show = lambda v, w, fmt: fmt(med(v, w)) if has(v, w) else ""
    showr = lambda v, b, w, value=rate: f"{pr(v, b, w, value):.3f}" if has(v, w) and has(b, w) else ""
    for w in WORKLOADS:
        lines.append(f"| {w} | " + " | ".join(show(v, w, lambda x: f"{x:,.0f}") for v in ("A", AA, "Z", "X", "H"))
                     + f" | {showr(AA, 'A', w)} | {showr('A', 'Z', w)} | {showr('A', 'X', w)} | {showr('H', 'X', w)} |")
    lines += ["", "## Server CPU per answer (median µs of CPU time per request)", "",
              "| workload | A | A' | Z | X | H | A'/A (noise) | A/Z | A/X | H/X |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for w in WORKLOADS:
        lines.append(f"| {w} | " + " | ".join(f"{cpu(v, w):.2f}" if has(v, w) else "" for v in ("A", AA, "Z", "X", "H"))
                     + f" | {showr(AA, 'A', w, cpu_of)} | {showr('A', 'Z', w, cpu_of)} | "
                     f"{showr('A', 'X', w, cpu_of)} | {showr('H', 'X', w, cpu_of)} |")
    lines += ["", "## Latency, loss and errors", "",
              "| workload | p99 A µs | p99 A' | p99 Z | p99 X | p99 A/Z | errors A | errors Z | errors X |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for w in WORKLOADS:
        lines.append(f"| {w} | " + " | ".join(f"{p99(v, w):,}" for v in ("A", AA, "Z", "X"))
                     + f" | {showr('A', 'Z', w, tail)} | {errors('A', w)} | {errors('Z', w)} | {errors('X', w)} |")
    lines.append("")
    lines.append("ECHO over UDP loss (median share of datagrams unanswered): "
                 + ", ".join(f"{v} {loss(v, 'echo_udp_16'):.4%}" for v in ("A", AA, "Z", "X")) + ".")
    syscalls = raw.get("syscalls", {})
    if syscalls:
        lines += ["", "## Syscalls per request (strace -c -f, bounded load)", "",
                  "Counted, not timed: these do not move with the machine's noise. strace slows "
                  "the servers, so the readiness-driven ones batch less (more `epoll_wait` per "
                  "request) than at full speed.", "",
                  "| server | workload | total | by name (≥ 0.01) |", "| --- | --- | ---: | --- |"]
        for v, per in syscalls.items():
            for w, calls in per.items():
                if not calls:
                    continue
                named = ", ".join(f"{n} {c:.2f}" for n, c in sorted(calls.items(), key=lambda x: -x[1]) if c >= 0.01)
                lines.append(f"| {v} | {w} | {sum(calls.values()):.2f} | {named} |")
    instructions = raw.get("instructions", {})
    if instructions:
        lines += ["", "## User-space instructions per request (callgrind)", "",
                  "| workload | A | Z | A/Z |", "| --- | ---: | ---: | ---: |"]
        for w in ("echo_tcp_16", "time_tcp"):
            a, z = instructions["A"][w], instructions["Z"][w]
            lines.append(f"| {w} | {a:,.0f} | {z:,.0f} | {ratio(a, z):.2f} |")
    lines += ["", "## Instruments", "",
              "| workload | B /s | N /s | T /s | D /s | A/B | T/N | D/N | CPU A/B |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for w in ("echo_tcp_16", "time_tcp"):
        lines.append(f"| {w} | {med('B', w):,.0f} | {med('N', w):,.0f} | {med('T', w):,.0f} | {med('D', w):,.0f} | "
                     f"{pr('A', 'B', w):.3f} | {pr('T', 'N', w):.3f} | {pr('D', 'N', w):.3f} | {pr('A', 'B', w, cpu_of):.3f} |")
    if has("L", "time_tcp"):
        lines += ["", "## The graceful close", "",
                  "DAYTIME and TIME close first; by default the connection then lingers "
                  "half-closed until the client's FIN (at most `close_linger`), so that input "
                  "the client sends late cannot turn the close into a reset. **L** closes at "
                  "once instead (`close_linger = 0s`).", "",
                  "| workload | A /s | L /s | X /s | CPU A µs | CPU L µs | CPU X µs | L/X /s | CPU L/X |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for w in ("daytime_tcp", "time_tcp"):
            lines.append(f"| {w} | {med('A', w):,.0f} | {med('L', w):,.0f} | {med('X', w):,.0f} | "
                         f"{cpu('A', w):.2f} | {cpu('L', w):.2f} | {cpu('X', w):.2f} | "
                         f"{pr('L', 'X', w):.3f} | {pr('L', 'X', w, cpu_of):.3f} |")
    lines += ["", f"## Memory at {hold['A']['held']:,} idle ECHO connections", "",
              "| variant | RSS before (KiB) | RSS holding (KiB) | held | KiB per connection |",
              "| --- | ---: | ---: | ---: | ---: |"]
    for v in hold:
        h = hold[v]
        per = f"{h['per_connection_kib']:.2f}" if h["per_connection_kib"] is not None else "n/a"
        lines.append(f"| {v} | {h['rss_before_kib']:,} | {h['rss_held_kib']:,} | {h['held']:,} | {per} |")
    lines += ["", "Each a fresh process (one that served the load rounds keeps their memory, "
              "which held connections would reuse unseen). xinetd is not measured here: it "
              "forks a process per TCP ECHO connection. **Z** holds a task and a 16 KiB "
              "buffer per connection.", "",
              "## Start and size", "",
              f"Start to ready (`/readyz` 200), median of 5: A {ready['A']:.1f} ms, B {ready['B']:.1f} ms.",
              "", "| binary | bytes |", "| --- | ---: |"]
    for binary, size in sizes.items():
        lines.append(f"| {binary} | {size:,} |")

    per_conn = hold["A"]["per_connection_kib"]
    noise = {w: abs(1 - pr(AA, "A", w)) for w in WORKLOADS}
    noise_cpu = {w: abs(1 - pr(AA, "A", w, cpu_of)) for w in WORKLOADS}
    e16 = "echo_tcp_16"
    targets = [
        ("ECHO TCP 16: throughput A ≥ 0.97 × Z", pr("A", "Z", e16), 0.97, ">=", noise[e16]),
        ("ECHO TCP 16: CPU per message A ≤ 1.03 × Z", pr("A", "Z", e16, cpu_of), 1.03, "<=", noise_cpu[e16]),
        ("ECHO TCP 16: p99 A ≤ 1.10 × Z", pr("A", "Z", e16, tail), 1.10, "<=", None),
        ("ECHO TCP 16: throughput A ≥ 1.0 × X", pr("A", "X", e16), 1.0, ">=", noise[e16]),
        ("ECHO TCP 16: CPU per message A ≤ 1.0 × X", pr("A", "X", e16, cpu_of), 1.0, "<=", noise_cpu[e16]),
        ("ECHO TCP 256: CPU per message A ≤ 0.90 × X", pr("A", "X", "echo_tcp_256", cpu_of), 0.90, "<=", noise_cpu["echo_tcp_256"]),
        ("ECHO TCP 1,000: CPU per message A ≤ 0.65 × X", pr("A", "X", "echo_tcp_1000", cpu_of), 0.65, "<=", noise_cpu["echo_tcp_1000"]),
        ("ECHO TCP 256 and 1,000: no errors (A)", errors("A", "echo_tcp_256") + errors("A", "echo_tcp_1000"), 0, "==", None),
        ("DAYTIME: connections/s A ≥ 1.2 × X", pr("A", "X", "daytime_tcp"), 1.2, ">=", noise["daytime_tcp"]),
        ("DAYTIME: CPU per connection A ≤ 1.0 × X", pr("A", "X", "daytime_tcp", cpu_of), 1.0, "<=", noise_cpu["daytime_tcp"]),
        ("TIME: connections/s A ≥ 1.2 × X", pr("A", "X", "time_tcp"), 1.2, ">=", noise["time_tcp"]),
        ("TIME: CPU per connection A ≤ 1.0 × X", pr("A", "X", "time_tcp", cpu_of), 1.0, "<=", noise_cpu["time_tcp"]),
        ("threaded: ECHO TCP 16 throughput H ≥ 0.90 × X", pr("H", "X", e16), 0.90, ">=", None),
        ("UDP 16 flows: no loss (A)", loss("A", "echo_udp_16"), 0, "==", None),
        ("UDP 16 flows: throughput A ≥ 1.0 × Z", pr("A", "Z", "echo_udp_16"), 1.0, ">=", noise["echo_udp_16"]),
        ("≤ 3 KiB RSS per idle connection at 10,000 (A)", per_conn if per_conn is not None else float("nan"), 3, "<=", None),
    ]
    lines += ["", "## Targets", "",
              "Noise is the A/A control's distance from 1 on the same measure: a ratio within "
              "that distance of its target is not a clear pass or miss.", "",
              "| target | measured | A/A noise | met |", "| --- | ---: | ---: | --- |"]
    for name, value, goal, op, noise_of in targets:
        met = {">=": value >= goal, "<=": value <= goal, "==": value == goal}[op]
        close = noise_of is not None and abs(value - goal) <= noise_of * max(goal, 1e-9) and not met
        shown = f"{value:.4%}" if "loss" in name else (f"{value:,.0f}" if op == "==" else f"{value:.3f}")
        verdict = "yes" if met else ("within noise" if close else "**no**")
        lines.append(f"| {name} | {shown} | {'' if noise_of is None else f'{noise_of:.1%}'} | {verdict} |")
    notes = ROOT / "bench" / "notes.md"
    if notes.exists():
        lines += ["", notes.read_text().rstrip()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    try:
        main()
    finally:
        for proc in STARTED:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        for group in CGROUPS:
            try:
                group.rmdir()
            except OSError:
                pass
