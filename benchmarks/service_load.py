"""Load on the generation service: requests/s and p50/p99 latency vs. client concurrency.

A real server (``python -m diffusion_lab serve`` on a free localhost port, started and
stopped by PID) is driven by 1, 2, 4, 8 and 16 client threads, each with its own
keep-alive HTTP connection, for two workloads:

* ``generate``: ``POST /api/generate`` mnist_cond, n = 1, 10 DPM-Solver steps (10 UNet calls);
* ``health``: ``GET /api/health`` (the HTTP + framework floor).

Latency is measured by the client, per request, from send to the full body. Requests
refused with 503 (queue full) are counted apart and left out of the latency percentiles.
The machine may be shared, so each level runs ``--repeats`` times, in alternating order
(1 → 16, then 16 → 1, ...), and the run with the highest throughput is kept; each row
records the 1-minute load average at its end (above the core count: others were busy).
Results: ``benchmarks/results/service_load.csv`` and ``service_load.png``.

    python benchmarks/service_load.py [--concurrency 2] [--threads 1] [--queue-size 32]
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import threading
import time
from pathlib import Path

import httpx
import matplotlib
import matplotlib.ticker
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from diffusion_lab.service.launch import ServerProcess  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
LEVELS = (1, 2, 4, 8, 16)
WORKLOADS = {
    "generate": ("POST", "/api/generate",
                 {"model": "mnist_cond", "n": 1, "steps": 10, "labels": 3, "seed": 0}),
    "health": ("GET", "/api/health", None),
}


def drive(url: str, workload: str, clients: int, total: int) -> dict:
    """``total`` requests shared by ``clients`` threads; per-request latencies and outcomes."""
    method, path, body = WORKLOADS[workload]
    lock, issued = threading.Lock(), [0]
    latencies, rejected, errors = [], [0], []
    barrier = threading.Barrier(clients)

    def client():
        with httpx.Client(base_url=url, timeout=300) as c:
            c.get("/api/health")  # open the keep-alive connection before timing
            barrier.wait(60)
            while True:
                with lock:
                    if issued[0] >= total:
                        return
                    issued[0] += 1
                start = time.perf_counter()
                r = c.request(method, path, json=body)
                seconds = time.perf_counter() - start
                with lock:
                    if r.status_code == 200:
                        latencies.append(seconds)
                    elif r.status_code == 503:
                        rejected[0] += 1
                    else:
                        errors.append(r.status_code)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{workload}: unexpected status codes {sorted(set(errors))}")
    lat = np.array(latencies) * 1000
    return {"workload": workload, "clients": clients, "requests": total, "ok": len(latencies),
            "rejected_503": rejected[0], "seconds": round(wall, 3),
            "req_per_s": round(len(latencies) / wall, 2),
            "p50_ms": round(float(np.percentile(lat, 50)), 2),
            "p99_ms": round(float(np.percentile(lat, 99)), 2),
            "mean_ms": round(float(lat.mean()), 2),
            "load_avg_1min": round(os.getloadavg()[0], 2)}  # others' work on a shared machine


def plot(rows: list[dict], title: str, out: Path) -> None:
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), constrained_layout=True)
    for r_i, workload in enumerate(WORKLOADS):
        sel = [r for r in rows if r["workload"] == workload]
        c = [r["clients"] for r in sel]
        ax = axes[r_i, 0]
        ax.plot(c, [r["req_per_s"] for r in sel], "o-", color="C0")
        ax.set(xscale="log", xticks=LEVELS, xticklabels=LEVELS, ylim=(0, None),
               xlabel="concurrent clients", ylabel="requests / s", title=f"{workload}: throughput")
        ax = axes[r_i, 1]
        ax.plot(c, [r["p50_ms"] for r in sel], "o-", label="p50", color="C1")
        ax.plot(c, [r["p99_ms"] for r in sel], "s--", label="p99", color="C3")
        ax.set(xscale="log", yscale="log", xticks=LEVELS, xticklabels=LEVELS,
               xlabel="concurrent clients", ylabel="latency (ms)", title=f"{workload}: latency")
        ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.legend()
        for ax in axes[r_i]:
            ax.grid(alpha=0.3, which="both")
    fig.suptitle(title, fontsize=10)
    fig.savefig(out, dpi=110)


def _title(args) -> str:
    cpu = platform.processor() or platform.machine()
    return (f"diffusion_lab service on {os.cpu_count()} CPU cores ({cpu}): server concurrency "
            f"{args.concurrency} x {args.threads} torch thread(s), queue {args.queue_size}\n"
            f"generate = mnist_cond n=1, 10 DPM-Solver steps; best of {args.repeats} "
            "(alternating order); load average in the CSV")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--concurrency", type=int, default=2, help="server: generations at once")
    p.add_argument("--threads", type=int, default=1, help="server: torch threads per generation")
    p.add_argument("--queue-size", type=int, default=32, help="server: waiting generations")
    p.add_argument("--generate-requests", type=int, default=32)
    p.add_argument("--health-requests", type=int, default=800)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--replot", action="store_true", help="only redraw the PNG from the CSV")
    args = p.parse_args(argv)
    server_args = ["--concurrency", str(args.concurrency), "--threads", str(args.threads),
                   "--queue-size", str(args.queue_size)]
    if args.replot:
        with open(RESULTS / "service_load.csv", newline="") as f:
            rows = [{k: v if k == "workload" else float(v) for k, v in r.items()}
                    for r in csv.DictReader(f)]
        plot(rows, _title(args), RESULTS / "service_load.png")
        return 0
    rows = []
    with ServerProcess(*server_args, threads=args.threads) as server:
        httpx.post(server.url + "/api/generate", json=WORKLOADS["generate"][2], timeout=120)
        for workload in WORKLOADS:
            total = args.generate_requests if workload == "generate" else args.health_requests
            best: dict[int, dict] = {}
            for repeat in range(args.repeats):
                for clients in LEVELS if repeat % 2 == 0 else LEVELS[::-1]:
                    row = drive(server.url, workload, clients, max(total, clients))
                    print(row, flush=True)
                    if clients not in best or row["req_per_s"] > best[clients]["req_per_s"]:
                        best[clients] = row
            rows += [best[c] for c in LEVELS]
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / "service_load.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, _title(args), RESULTS / "service_load.png")
    print(f"wrote {RESULTS / 'service_load.csv'} and service_load.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
