#!/usr/bin/env python3
"""Bounded load test of `img2gps serve` on 127.0.0.1: N requests from C concurrent clients, mixed good photos and
bad-input corpus entries. Reports throughput, latency p50/p95, server memory before/after and the 5xx count.

    python bench/load_test.py --requests 2000 --concurrency 20 --json bench/results/load-test.json

Good photos are penn91 photos held out of the model's gallery (the model is fitted here on the rest).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from img2gps.provenance import code_revision  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(model_dir: Path, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-c", "import sys; from img2gps.cli import main; sys.exit(main())", "serve",
           "--model", str(model_dir), "--host", "127.0.0.1", "--port", str(port), "--no-tiles"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    import httpx

    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-500:]}")
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start in 120 s")


async def hammer(url: str, payloads: list[tuple[str, bytes]], n: int, concurrency: int) -> list[tuple[int, float]]:
    import httpx

    results: list[tuple[int, float]] = []
    counter = iter(range(n))

    async def worker(client):
        for i in counter:
            name, data = payloads[i % len(payloads)]
            t0 = time.perf_counter()
            try:
                r = await client.post(url, files={"file": (name, data, "application/octet-stream")})
                code = r.status_code
            except httpx.HTTPError:
                code = 599  # connection-level failure counts as a server error
            results.append((code, (time.perf_counter() - t0) * 1000))

    async with httpx.AsyncClient(timeout=120) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return results


def run(model_dir: Path, payloads, n: int, concurrency: int) -> dict:
    port = free_port()
    proc = start_server(model_dir, port)
    try:
        base = f"http://127.0.0.1:{port}"
        mem0 = rss_mb(proc.pid)
        t0 = time.perf_counter()
        res = asyncio.run(hammer(base + "/predict", payloads, n, concurrency))
        wall = time.perf_counter() - t0
        mem1 = rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    codes = np.array([c for c, _ in res])
    ms = np.array([t for _, t in res])
    ok = codes == 200
    return {
        "requests": int(len(res)), "concurrency": concurrency, "wall_s": round(wall, 1),
        "throughput_rps": round(len(res) / wall, 2),
        "latency_ms_p50": round(float(np.median(ms)), 1), "latency_ms_p95": round(float(np.quantile(ms, 0.95)), 1),
        "ok_latency_ms_p50": round(float(np.median(ms[ok])), 1) if ok.any() else None,
        "status_2xx": int(((codes >= 200) & (codes < 300)).sum()), "status_4xx": int(((codes >= 400) & (codes < 500)).sum()),
        "status_5xx": int((codes >= 500).sum()), "server_rss_mb_before": round(mem0, 1), "server_rss_mb_after": round(mem1, 1),
    }


def build_payloads(data: Path, corpus_dir: Path, holdout: list[str]) -> list[tuple[str, bytes]]:
    sys.path.insert(0, str(ROOT / "tests"))
    from corpus import build_photo_corpus

    good = [(n, (data / "images" / n).read_bytes()) for n in holdout]
    bad = [(name, p.read_bytes()) for name, p, _ in build_photo_corpus(corpus_dir) if p.is_file()]
    # interleave: two good photos for every bad one
    out = []
    for i in range(max(len(good), len(bad))):
        out += [good[i % len(good)], good[(i + 1) % len(good)], bad[i % len(bad)]]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT / ".." / "shared" / "data" / "penn91"))
    ap.add_argument("--method", default="knn")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=20)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    from img2gps.cli.demo import holdout_ids
    from img2gps.data import load_dataset
    from img2gps.predictors import make_predictor

    ds = load_dataset(a.data)
    held = holdout_ids(ds.ids, 0.1, 42)
    with tempfile.TemporaryDirectory() as tmp:
        p = make_predictor(a.method)
        p.fit(ds.exclude_ids(held))
        p.save(Path(tmp) / "model")
        payloads = build_payloads(Path(a.data), Path(tmp) / "corpus", held)
        stats = run(Path(tmp) / "model", payloads, a.requests, a.concurrency)
    print(json.dumps(stats, indent=2))
    if a.json:
        cmd = "python bench/load_test.py " + " ".join(sys.argv[1:])
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({
            "title": f"Server load test ({a.method}, {a.requests} requests, {a.concurrency} concurrent clients)",
            "command": cmd, "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "machine": {"cpus": len(os.sched_getaffinity(0))}, "code": code_revision(),
            "table": [stats]}, indent=2))
    return 0 if stats["status_5xx"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
