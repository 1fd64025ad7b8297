#!/usr/bin/env python3
"""What the daemon costs while it has (almost) nothing to do.

    python3 benches/idle_daemon.py [--duration 600] [--servers 50] [--keys 20]

Starts the simulated servers (half 1.x, half 2.x) in two processes of their own (the
fleet example's `--serve`, so their cost is not counted), writes a configuration with
only `[agent]` and the servers (every job on its DEFAULT schedule, /metrics on a free
loopback port), starts the release `keywarden run` on a fresh state directory, and
samples the daemon once a second for `--duration` seconds:

- VmRSS and VmHWM at start (5 s after the process started), at 2 min and at the end;
- CPU seconds (user + sys) of the daemon;
- wake-ups: voluntary + nonvoluntary context switches summed over every thread
  (/proc/PID/task/*/status) per second, overall and over the quiet stretches: the
  seconds in which no job run was in flight, nor ended less than `QUIET_MARGIN_S`
  before (runs come from the store's job_runs table after the daemon stopped);
- the threads the daemon has, and in the quiet stretches, which thread names switch.

Prints a table and one JSON line; docs/performance.md ("Idle daemon") quotes them.
Builds the release binaries first unless --no-build. Not part of `cargo test`.
"""

import argparse
import collections
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
API_KEY = "fleet-bench-api-key"  # the fleet example's
# A second that starts this soon after a run ended still counts as busy: the run's
# aftermath (store write, alert pipeline, upkeep) follows its end.
QUIET_MARGIN_S = 2.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


def target_dir():
    return Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_fleet(fleet_bin, api, first, servers, keys):
    child = subprocess.Popen(
        [str(fleet_bin), "--serve", "--api", str(api), "--first", str(first),
         "--servers", str(servers), "--keys", str(keys)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = child.stdout.readline()
    if not line:
        sys.exit(f"fleet --serve --api {api} printed nothing")
    return child, json.loads(line)


def write_config(directory, served, port, webhook):
    bundle = directory / "reality-ca.pem"
    bundle.write_text("".join(s["ca_pem"] for s in served))
    lines = [
        "[agent]",
        f'state_dir = "{directory / "state"}"',
        f'listen = "127.0.0.1:{port}"',
        'log_format = "text"',
    ]
    if webhook:
        # A sink that is never called (healthy servers raise no alert): what it costs
        # to have one is its dispatcher task.
        lines += [
            "",
            "[[alerts.webhook]]",
            'name = "hook"',
            f'url = "http://127.0.0.1:{free_port()}/hook"',
        ]
    for index, server in enumerate(served):
        lines += [
            "",
            "[[servers]]",
            f'name = "srv-{index:03}"',
            f'url = "{server["url"]}"',
            'api_key_env = "FLEET_KEY"',
            f'reality_ca_file = "{bundle}"',
        ]
    path = directory / "agent.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def read_status(path):
    fields = {}
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return fields


def kib(value):
    return int(value.split()[0]) if value else 0


def sample(pid):
    """One look at the daemon: time, RSS, HWM, CPU s, switches per thread name, threads."""
    now = time.time()
    status = read_status(f"/proc/{pid}/status")
    if status is None:
        return None
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read().rsplit(")", 1)[1].split()
    cpu = (int(stat[11]) + int(stat[12])) / CLK_TCK
    per_thread = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        fields = read_status(f"/proc/{pid}/task/{tid}/status")
        if fields is None:
            continue
        switches = int(fields.get("voluntary_ctxt_switches", 0)) + int(
            fields.get("nonvoluntary_ctxt_switches", 0))
        per_thread[tid] = (fields.get("Name", "?"), switches)
    return {
        "t": now,
        "rss_kib": kib(status.get("VmRSS")),
        "anon_kib": kib(status.get("RssAnon")),
        "file_kib": kib(status.get("RssFile")),
        "hwm_kib": kib(status.get("VmHWM")),
        "cpu_s": cpu,
        "threads": per_thread,
    }


def switches_between(a, b):
    """Context switches from sample a to sample b, per thread name. A thread born in
    between counts all of its switches; one that ended in between counts one (its last
    wake-up, to exit: what it did after sample a is gone with it)."""
    by_name = collections.Counter()
    for tid, (name, count) in b["threads"].items():
        before = a["threads"].get(tid, (name, 0))[1]
        by_name[name] += max(0, count - before)
    for tid, (name, _) in a["threads"].items():
        if tid not in b["threads"]:
            by_name[name] += 1
    return by_name


def thread_churn(samples):
    """Threads that started and ended while sampled."""
    born = ended = 0
    for a, b in zip(samples, samples[1:]):
        born += len(set(b["threads"]) - set(a["threads"]))
        ended += len(set(a["threads"]) - set(b["threads"]))
    return born, ended


def run_intervals(state_dir):
    """(start, end) epoch seconds of every recorded job run."""
    db = state_dir / "state.db"
    if not db.exists():
        candidates = list(state_dir.glob("*.db")) + list(state_dir.glob("*.sqlite*"))
        if not candidates:
            return []
        db = candidates[0]
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT started_at, duration_ms FROM job_runs").fetchall()
    finally:
        con.close()
    intervals = []
    for started, duration_ms in rows:
        start = datetime.fromisoformat(started.replace("Z", "+00:00")).timestamp()
        intervals.append((start, start + duration_ms / 1000.0))
    return sorted(intervals)


def busy(t0, t1, intervals):
    """Whether a run was in flight in [t0, t1], or ended within the margin before t0."""
    return any(start <= t1 and end + QUIET_MARGIN_S >= t0 for start, end in intervals)


def measure(args, bins):
    half = args.servers // 2
    fleets = []
    try:
        for api, first, count in ((1, 0, half), (2, half, args.servers - half)):
            if count:
                fleets.append(start_fleet(bins["fleet"], api, first, count, args.keys))
        served = [s for _, batch in fleets for s in batch]
        with tempfile.TemporaryDirectory(prefix="idle-daemon-") as tmp:
            directory = Path(tmp)
            config = write_config(directory, served, free_port(), args.webhook)
            env = dict(os.environ, FLEET_KEY=API_KEY)
            env.pop("RUST_LOG", None)  # the daemon's default log level
            log_path = directory / "daemon.log"
            with open(log_path, "w") as log:
                daemon = subprocess.Popen(
                    [str(bins["keywarden"]), "run", "--config", str(config)],
                    stdout=log, stderr=subprocess.STDOUT, env=env)
            started = time.time()
            samples = []
            try:
                deadline = started + args.duration
                next_at = started + 1.0
                while time.time() < deadline:
                    time.sleep(max(0.0, next_at - time.time()))
                    next_at += 1.0
                    s = sample(daemon.pid)
                    if s is None:
                        sys.exit(f"the daemon died:\n{log_path.read_text()[-3000:]}")
                    samples.append(s)
                sockets = count_sockets(daemon.pid)
            finally:
                daemon.send_signal(signal.SIGTERM)
                try:
                    daemon.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    daemon.kill()
            intervals = run_intervals(directory / "state")
            log_text = log_path.read_text()
            if args.keep_log:
                Path(args.keep_log).write_text(log_text)
    finally:
        for child, _ in fleets:
            child.stdin.close()
            child.wait()
    result = summarize(args, started, samples, intervals, log_text)
    result["sockets_at_end"] = sockets
    return result


def count_sockets(pid):
    """Open sockets (the listener and idle pooled connections, between runs)."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return count


def at_offset(samples, started, seconds):
    candidates = [s for s in samples if s["t"] - started >= seconds]
    return candidates[0] if candidates else samples[-1]


def summarize(args, started, samples, intervals, log_text):
    first, last = samples[0], samples[-1]
    start = at_offset(samples, started, 5)
    two_min = at_offset(samples, started, 120)
    # Wake-ups after the first cycle (the first 60 s fill empty memories).
    steady = [s for s in samples if s["t"] - started >= 60] or samples
    total = quiet_total = quiet_seconds = 0
    quiet_by_name = collections.Counter()
    all_by_name = collections.Counter()
    for a, b in zip(steady, steady[1:]):
        by_name = switches_between(a, b)
        count = sum(by_name.values())
        total += count
        all_by_name.update(by_name)
        if not busy(a["t"], b["t"], intervals):
            quiet_total += count
            quiet_seconds += b["t"] - a["t"]
            quiet_by_name.update(by_name)
    span = steady[-1]["t"] - steady[0]["t"]
    names = collections.Counter(name for name, _ in last["threads"].values())
    born, ended = thread_churn(samples)
    max_threads = max(len(s["threads"]) for s in samples)
    errors = sum(1 for line in log_text.splitlines() if " ERROR " in line)
    warnings = sum(1 for line in log_text.splitlines() if " WARN " in line)
    return {
        "servers": args.servers,
        "webhook": args.webhook,
        "keys": args.keys,
        "duration_s": round(last["t"] - started, 1),
        "loadavg": os.getloadavg()[0],
        "rss_mib": {
            "start": round(start["rss_kib"] / 1024, 1),
            "2min": round(two_min["rss_kib"] / 1024, 1),
            "end": round(last["rss_kib"] / 1024, 1),
        },
        # RssAnon: what the daemon allocated; RssFile: mostly its own code pages
        # (clean, shared with the page cache).
        "anon_mib": {
            "start": round(start["anon_kib"] / 1024, 1),
            "2min": round(two_min["anon_kib"] / 1024, 1),
            "end": round(last["anon_kib"] / 1024, 1),
        },
        "file_mib": {
            "start": round(start["file_kib"] / 1024, 1),
            "2min": round(two_min["file_kib"] / 1024, 1),
            "end": round(last["file_kib"] / 1024, 1),
        },
        "hwm_mib": {
            "start": round(start["hwm_kib"] / 1024, 1),
            "2min": round(two_min["hwm_kib"] / 1024, 1),
            "end": round(last["hwm_kib"] / 1024, 1),
        },
        "cpu_s": round(last["cpu_s"], 2),
        "cpu_s_after_first_minute": round(last["cpu_s"] - steady[0]["cpu_s"], 2),
        "runs": len(intervals),
        "wakeups_per_s": round(total / span, 2) if span else None,
        "quiet_s": round(quiet_seconds, 1),
        "quiet_wakeups_per_s": round(quiet_total / quiet_seconds, 3) if quiet_seconds else None,
        "quiet_wakeups_by_thread": dict(quiet_by_name.most_common()),
        "wakeups_by_thread": dict(all_by_name.most_common()),
        "threads": dict(names.most_common()),
        "threads_max": max_threads,
        "threads_started": born,
        "threads_ended": ended,
        "log_errors": errors,
        "log_warnings": warnings,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=600, help="seconds (default 600)")
    parser.add_argument("--servers", type=int, default=50)
    parser.add_argument("--keys", type=int, default=20, help="keys per server")
    parser.add_argument("--webhook", action="store_true",
                        help="configure one webhook sink (never called)")
    parser.add_argument("--keywarden", metavar="PATH",
                        help="measure this keywarden binary (e.g. a copy of main's)")
    parser.add_argument("--no-build", action="store_true", help="use the binaries as built")
    parser.add_argument("--keep-log", metavar="PATH", help="copy the daemon's log here")
    args = parser.parse_args()
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--quiet", "--example", "fleet",
                        "--bin", "keywarden"], cwd=REPO, check=True)
    release = target_dir() / "release"
    bins = {"keywarden": Path(args.keywarden or release / "keywarden"),
            "fleet": release / "examples" / "fleet"}
    r = measure(args, bins)
    print(f"idle daemon: {r['servers']} servers (half 1.x, half 2.x) x {r['keys']} keys, "
          f"default schedules{', a webhook sink' if r['webhook'] else ''}, {r['duration_s']} s, load average {r['loadavg']:.2f}")
    print(f"{'':<22} {'start':>8} {'2 min':>8} {'end':>8}")
    print(f"{'VmRSS MiB':<22} {r['rss_mib']['start']:>8} {r['rss_mib']['2min']:>8} "
          f"{r['rss_mib']['end']:>8}")
    for label, key in (("  of it RssAnon MiB", "anon_mib"), ("  of it RssFile MiB", "file_mib")):
        print(f"{label:<22} {r[key]['start']:>8} {r[key]['2min']:>8} {r[key]['end']:>8}")
    print(f"{'VmHWM MiB':<22} {r['hwm_mib']['start']:>8} {r['hwm_mib']['2min']:>8} "
          f"{r['hwm_mib']['end']:>8}")
    print(f"CPU s: {r['cpu_s']} in all, {r['cpu_s_after_first_minute']} after the first "
          f"minute; {r['runs']} job runs")
    print(f"wake-ups/s (after the first minute): {r['wakeups_per_s']} overall, "
          f"{r['quiet_wakeups_per_s']} in {r['quiet_s']} s with no run in flight")
    print(f"threads at the end: {r['threads']}; at most {r['threads_max']}; "
          f"{r['threads_started']} started and {r['threads_ended']} ended while sampled")
    print(f"quiet wake-ups by thread: {r['quiet_wakeups_by_thread']}")
    print(f"open sockets at the end: {r['sockets_at_end']}")
    print(f"log: {r['log_errors']} errors, {r['log_warnings']} warnings")
    print(json.dumps(r))


if __name__ == "__main__":
    main()
