#!/usr/bin/env python3
"""keywarden's quota runs next to the Python way, on the same simulated 2.x fleet.

    python3 benches/python_compare.py [--servers 100] [--keys 100] [--latency-ms 0 20]

The fleet (100 servers x 100 keys by default, API 2.x: per-key traffic reads) is served by
the fleet example in a process of its own (`fleet --serve`). Against it, one after the
other, for each latency:

- the Python way: aiohttp, list every server's keys, then GET every key's traffic, 15
  requests in flight across the whole fleet (what the integration keywarden replaces did);
- keywarden: `keywarden check --job quota` over the same servers, twice on one state
  store (the first run fills the ledger, the second is the daemon's steady state).

Each is a child process measured with wait4(): wall time, CPU time (user + sys) and
peak RSS. Prints a table and one JSON line; docs/performance.md quotes them. aiohttp is
installed into a venv under the cargo target directory when it is missing. Builds the
release binaries first (cargo build --release). Not part of `cargo test`.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
API_KEY = "fleet-bench-api-key"  # the fleet example's
IN_FLIGHT = 15

PYTHON_CLIENT = r'''
import asyncio, json, sys
import aiohttp

async def main():
    urls = json.loads(sys.argv[1])
    key = sys.argv[2]
    in_flight = asyncio.Semaphore(int(sys.argv[3]))
    headers = {"X-API-Key": key}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
        async def get(url):
            async with in_flight:
                async with session.get(url) as response:
                    response.raise_for_status()
                    return await response.json()

        lists = await asyncio.gather(*(get(f"{base}/keys") for base in urls))
        reads = [get(f"{base}/keys/{k['id']}/traffic")
                 for base, keys in zip(urls, lists) for k in keys]
        answers = await asyncio.gather(*reads)
        total = sum(int(a.get("total_bytes", 0)) for a in answers)
        print(json.dumps({"keys": len(answers), "total_bytes": total}))

asyncio.run(main())
'''


def target_dir():
    return Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))


def python_with_aiohttp():
    """A python that imports aiohttp: this one, or a venv under the target dir."""
    probe = [sys.executable, "-c", "import aiohttp"]
    if subprocess.run(probe, capture_output=True).returncode == 0:
        return sys.executable
    venv = target_dir() / "python-compare-venv"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    if subprocess.run([str(python), "-c", "import aiohttp"], capture_output=True).returncode:
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "aiohttp"], check=True)
    return str(python)


def measured(argv, env=None):
    """Run argv to its end; wall s, cpu s (user+sys), peak RSS MiB, stdout."""
    started = time.monotonic()
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    # wait4 gives the child's own rusage; read the pipes first so it cannot block.
    out, err = child.stdout.read(), child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - started
    return {
        "wall_s": round(wall, 3),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "exit": child.returncode,
        "stdout": out.decode(errors="replace"),
        "stderr": err.decode(errors="replace"),
    }


def keywarden_config(directory, urls):
    lines = [
        "[agent]",
        f'state_dir = "{directory / "state"}"',
        "",
        "[quotas]",
        'limit = "100 GiB"',
        "warn_at = [80, 95]",
    ]
    for index, url in enumerate(urls):
        lines += [
            "",
            "[[servers]]",
            f'name = "srv-{index:04}"',
            f'url = "{url}"',
            'api_key_env = "FLEET_KEY"',
            'timeout = "30s"',
        ]
    path = directory / "agent.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def compare(args, bins, python, latency):
    fleet = subprocess.Popen(
        [str(bins["fleet"]), "--serve", "--servers", str(args.servers), "--keys",
         str(args.keys), "--api", "2", "--latency-ms", str(latency)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        urls = [s["url"] for s in json.loads(fleet.stdout.readline())]
        with tempfile.TemporaryDirectory() as tmp:
            directory = Path(tmp)
            config = keywarden_config(directory, urls)
            client = directory / "client.py"
            client.write_text(PYTHON_CLIENT)
            py = measured([python, str(client), json.dumps(urls), API_KEY, str(IN_FLIGHT)])
            if py["exit"] != 0:
                sys.exit(f"the Python client failed:\n{py['stderr']}")
            env = dict(os.environ, FLEET_KEY=API_KEY, RUST_LOG="warn")
            argv = [str(bins["keywarden"]), "check", "--job", "quota", "--config", str(config)]
            first = measured(argv, env)
            steady = measured(argv, env)
            for run in (first, steady):
                # 0 OK, 1 warning, 2 critical are answers; 3 is "could not check".
                if run["exit"] not in (0, 1, 2):
                    sys.exit(f"keywarden check failed ({run['exit']}):\n{run['stderr'][-2000:]}")
    finally:
        fleet.stdin.close()
        fleet.wait()
    ratio = lambda a, b: round(a / b, 1) if b else None
    return {
        "latency_ms": latency,
        "python": {k: py[k] for k in ("wall_s", "cpu_s", "peak_rss_mib")},
        "python_read": json.loads(py["stdout"]),
        "keywarden_first": {k: first[k] for k in ("wall_s", "cpu_s", "peak_rss_mib")},
        "keywarden_steady": {k: steady[k] for k in ("wall_s", "cpu_s", "peak_rss_mib")},
        "cpu_ratio_steady": ratio(py["cpu_s"], steady["cpu_s"]),
        "cpu_ratio_first": ratio(py["cpu_s"], first["cpu_s"]),
        "wall_ratio_steady": ratio(py["wall_s"], steady["wall_s"]),
        "rss_ratio_steady": ratio(py["peak_rss_mib"], steady["peak_rss_mib"]),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--servers", type=int, default=100)
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--latency-ms", type=int, nargs="+", default=[0, 20])
    parser.add_argument("--no-build", action="store_true", help="use the binaries as built")
    args = parser.parse_args()
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--quiet", "--example", "fleet",
                        "--bin", "keywarden"], cwd=REPO, check=True)
    release = target_dir() / "release"
    bins = {"keywarden": release / "keywarden", "fleet": release / "examples" / "fleet"}
    python = python_with_aiohttp()
    results = [compare(args, bins, python, latency) for latency in args.latency_ms]
    print(f"{args.servers} servers x {args.keys} keys, API 2.x, {IN_FLIGHT} in flight for Python")
    print(f"{'latency':>8} {'who':<18} {'wall s':>8} {'cpu s':>8} {'rss MiB':>8}")
    for r in results:
        for who in ("python", "keywarden_first", "keywarden_steady"):
            m = r[who]
            print(f"{r['latency_ms']:>6}ms {who:<18} {m['wall_s']:>8} {m['cpu_s']:>8} "
                  f"{m['peak_rss_mib']:>8}")
        print(f"{'':>8} CPU ratio (Python / keywarden): steady {r['cpu_ratio_steady']}x, "
              f"first {r['cpu_ratio_first']}x; wall {r['wall_ratio_steady']}x; "
              f"RSS {r['rss_ratio_steady']}x")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
