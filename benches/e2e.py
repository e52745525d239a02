#!/usr/bin/env python3
"""End-to-end benchmark: for each dataset size, measure in the same session
  (a) billrun run: wall time and peak RSS at 1 and 2 threads,
  (b) the I/O floor: `billrun io-floor` (decode the same inputs, encode the same outputs),
  (c) the peer: DuckDB doing the usage rating and wallet debit (benches/duckdb_peer.py),
and write the table into docs/BENCHMARKS.md between the RESULTS markers.

Each measurement is taken RUNS times (default 3; RUNS_10M, default 1, for 10M accounts and
more, where one round takes ~5 minutes), the four interleaved round by round so that all share
the machine's slow and fast spells; the table shows medians (peak RSS: the largest).

usage: benches/e2e.py [ACCOUNTS ...]      (default: 100000 1000000; the full table:
                                           100000 1000000 10000000, ~8 minutes
                                           and ~70 s to generate the 10M dataset)
env:   BENCH_DIR (datasets, default /tmp/billrun-bench), CARGO_TARGET_DIR, RUNS, RUNS_10M
"""
import json
import os
import re
import statistics
import subprocess
import sys
import time

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sizes = [int(a) for a in sys.argv[1:]] or [100_000, 1_000_000]
runs_small = int(os.environ.get("RUNS", "3"))
runs_large = int(os.environ.get("RUNS_10M", "1"))
work = os.environ.get("BENCH_DIR", "/tmp/billrun-bench")
target = os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target"))
binary = os.path.join(target, "release", "billrun")
subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=root, check=True)
try:
    import duckdb  # noqa: F401
except ImportError:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "duckdb"], check=True)


def timed(cmd):
    """Wall seconds, peak RSS (bytes) and CPU seconds (user + system) of a command, via GNU time."""
    t = time.time()
    r = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True)
    wall = time.time() - t
    if r.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{r.stderr[-2000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr).group(1)) * 1024
    cpu = sum(float(re.search(rf"{k} time \(seconds\): ([0-9.]+)", r.stderr).group(1)) for k in ("User", "System"))
    return wall, rss, cpu


rows = []
for n in sizes:
    data = os.path.join(work, str(n))
    if not os.path.exists(os.path.join(data, "job.toml")):
        subprocess.run([binary, "generate", "--accounts", str(n), "--seed", "1", "--out", data], check=True)
    inputs = ["--state", f"{data}/state", "--usage", f"{data}/usage.parquet",
              "--credits", f"{data}/credits.parquet", "--events", f"{data}/events.parquet"]
    runs = runs_large if n >= 10_000_000 else runs_small
    res = {1: [], 2: []}
    floors, peers = [], []
    for _ in range(runs):
        for threads in (1, 2):
            out = os.path.join(data, f"out-{threads}")
            wall, rss, cpu = timed([binary, "-q", "run", "--job", f"{data}/job.toml", *inputs, "--as-of", "2026-11-22",
                                    "--threads", str(threads), "--output", out, "--force"])
            stats = json.load(open(os.path.join(out, "run_stats.json")))
            res[threads].append((wall, rss, cpu, stats["input_rows"]))
        floors.append(json.loads(subprocess.run([binary, "io-floor", *inputs, "--outputs", os.path.join(data, "out-2"),
                                                 "--threads", "2"], capture_output=True, text=True, check=True).stdout))
        peers.append(timed([sys.executable, os.path.join(root, "benches", "duckdb_peer.py"), data, "2",
                            os.path.join(data, "duckdb-out")]))
    med = statistics.median
    floor = {k: med(f[k] for f in floors) for k in ("total_seconds", "decode_seconds", "encode_seconds")}
    peer_wall, peer_rss = med(p[0] for p in peers), max(p[1] for p in peers)
    input_rows = res[2][0][3]
    rows.append({
        "accounts": n, "input_rows": input_rows,
        "t1": med(r[0] for r in res[1]), "t2": med(r[0] for r in res[2]),
        "t2_all": [round(r[0], 1) for r in res[2]], "cpu2": med(r[2] for r in res[2]),
        "rss1": max(r[1] for r in res[1]), "rss2": max(r[1] for r in res[2]),
        "floor": floor["total_seconds"], "decode": floor["decode_seconds"], "encode": floor["encode_seconds"],
        "peer": peer_wall, "peer_rss": peer_rss,
    })
    print(rows[-1], flush=True)
gib = 1024 ** 3
lines = [
    "| accounts | input rows | billrun 1 thread | billrun 2 threads (each run) | CPU s (2 thr) | rows/s (2 thr) | speed-up 1→2 | peak RSS (2 thr) | I/O floor (decode + encode) | billrun / floor | DuckDB peer (2 thr) | billrun / peer |",
    "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
]
for r in rows:
    lines.append(
        f"| {r['accounts']:,} | {r['input_rows']:,} | {r['t1']:.1f} s | {r['t2']:.1f} s ({', '.join(map(str, r['t2_all']))}) | "
        f"{r['cpu2']:.1f} | {r['input_rows'] / r['t2']:,.0f} | "
        f"{r['t1'] / r['t2']:.2f}× | {r['rss2'] / gib:.2f} GiB | {r['floor']:.1f} s ({r['decode']:.1f} + {r['encode']:.1f}) | "
        f"{r['t2'] / r['floor']:.2f}× | {r['peer']:.1f} s ({r['peer_rss'] / gib:.2f} GiB) | {r['t2'] / r['peer']:.2f}× |"
    )
table = "\n".join(lines)
doc = os.path.join(root, "docs", "BENCHMARKS.md")
text = open(doc).read()
text = re.sub(r"<!-- RESULTS -->.*<!-- /RESULTS -->", f"<!-- RESULTS -->\n{table}\n<!-- /RESULTS -->", text, flags=re.S)
open(doc, "w").write(text)
print(table)
