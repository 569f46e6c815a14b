"""Gateway throughput next to a raw aiokafka producer, and the spool's replay rate; one run, one machine.

    python bench/bench_gateway.py            # starts a private Kafka on 19130 (its own data dir), ~1 minute
    python bench/bench_gateway.py --bootstrap 127.0.0.1:9092 --seconds 3

For each concurrency level (1, 4, 16 concurrent senders) both sides send the same events in batches of
`--batch` (one HTTP request = one batch; the raw producer sends the batch and awaits every ack), for
`--seconds` each, and we report acknowledged events/s and per-batch p50/p99 latency. The figure that
matters is the ratio gateway / raw at the same concurrency. Then 10,000 events are appended to a disk spool
and the time to replay them to Kafka is measured (the design the spool replaces needed ~10 s).
Results go to bench/results/gateway-<time>.json and are printed.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from services import database_url, redis_url  # bench/services.py (run as a script from bench/)

from ingestflow.app.clients.kafka import OutgoingMessage, Producer, ensure_topics
from ingestflow.app.core import serde
from ingestflow.app.core.settings import KafkaConnection
from ingestflow.app.gateway.spool import Spool
from ingestflow.schemas import topics

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-app-token-0123456789abcdef"
GATEWAY_PORT = 18140
KAFKA_PORT = 19130
POOL = 256  # distinct batches cycled through (ids repeat across the pool; neither side dedups)


def events(n: int, run: str, start: int) -> list[dict[str, Any]]:
    return [{"type": "VIEW", "ruleId": f"bench-{run}-{(start + i) % 64}", "userId": f"u{i % 1000}",
             "idempotencyKey": f"{run}-{start + i}"} for i in range(n)]


def as_messages(batch: list[dict[str, Any]]) -> list[OutgoingMessage]:
    """What the gateway produces for a batch (same key and about the same value size)."""
    now = int(time.time() * 1000)
    return [OutgoingMessage("events", e["ruleId"].encode(),
                            serde.dumps({**e, "id": e["idempotencyKey"], "ts": "2026-11-23T10:00:00Z",
                                         "ip": "127.0.0.1", "authorId": None}), now) for e in batch]


def summary(latencies: list[float], events_sent: int, seconds: float) -> dict[str, float]:
    q = statistics.quantiles(latencies, n=100) if len(latencies) >= 2 else latencies * 99
    return {"events_per_s": round(events_sent / seconds, 1), "p50_ms": round(q[49] * 1000, 2),
            "p99_ms": round(q[98] * 1000, 2), "batches": len(latencies)}


async def run_raw(kafka: KafkaConnection, concurrency: int, seconds: float, batch: int, run: str) -> dict[str, float]:
    producer = Producer(kafka, send_timeout=10)
    await producer.start()
    latencies: list[float] = []
    sent = 0
    # Built before the clock starts, as the gateway side's request bodies are: only sending is timed.
    pool = [as_messages(events(batch, run, i * batch)) for i in range(POOL)]
    deadline = time.perf_counter() + seconds

    async def sender(worker: int) -> None:
        nonlocal sent
        n = worker
        while time.perf_counter() < deadline:
            messages = pool[n % POOL]
            t = time.perf_counter()
            await producer.send_many(messages)
            latencies.append(time.perf_counter() - t)
            sent += batch
            n += concurrency
    started = time.perf_counter()
    await asyncio.gather(*(sender(w) for w in range(concurrency)))
    elapsed = time.perf_counter() - started
    await producer.stop()
    return summary(latencies, sent, elapsed)


async def run_gateway(concurrency: int, seconds: float, batch: int, run: str) -> dict[str, float]:
    url = f"http://127.0.0.1:{GATEWAY_PORT}/ingest/events"
    headers = {"x-app-token": TOKEN, "content-type": "application/json"}
    latencies: list[float] = []
    sent = 0
    refused = 0
    pool = [serde.dumps({"events": events(batch, run, i * batch)}) for i in range(POOL)]
    deadline = time.perf_counter() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http:
        async def sender(worker: int) -> None:
            nonlocal sent, refused
            n = worker
            while time.perf_counter() < deadline:
                body = pool[n % POOL]
                t = time.perf_counter()
                async with http.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    ok = resp.status == 202
                latencies.append(time.perf_counter() - t)
                n += concurrency
                if ok:
                    sent += batch
                else:
                    refused += 1
        started = time.perf_counter()
        await asyncio.gather(*(sender(w) for w in range(concurrency)))
        elapsed = time.perf_counter() - started
    result = summary(latencies, sent, elapsed)
    result["refused"] = refused
    return result


async def run_replay(kafka: KafkaConnection, count: int, run: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        spool = Spool(Path(tmp), max_bytes=1 << 30)
        await spool.open()
        t = time.perf_counter()
        for start in range(0, count, 50):
            await spool.append(as_messages(events(50, run, start)))
        append_s = time.perf_counter() - t
        producer = Producer(kafka, send_timeout=10, client_id="bench-replay", linger_ms=20)
        await producer.start()
        t = time.perf_counter()
        replayed = await spool.drain(producer.send_many)
        replay_s = time.perf_counter() - t
        await producer.stop()
        await spool.close()
    assert replayed == count, (replayed, count)
    return {"events": count, "replay_s": round(replay_s, 3), "replay_events_per_s": round(count / replay_s, 1),
            "append_s_in_batches_of_50": round(append_s, 3)}


def kafka_script(action: str, data_dir: Path) -> None:
    env = {**os.environ, "KAFKA_PORT": str(KAFKA_PORT), "KAFKA_CONTROLLER_PORT": str(KAFKA_PORT + 1),
           "KAFKA_DATA_DIR": str(data_dir)}
    subprocess.run([str(ROOT / "deploy" / "kafka.sh"), action], check=True, env=env)


async def wait_health(timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(f"http://127.0.0.1:{GATEWAY_PORT}/health") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.3)
    raise RuntimeError("gateway did not become healthy")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", help="use this Kafka instead of starting a private one")
    parser.add_argument("--seconds", type=float, default=4.0, help="per concurrency level and side")
    parser.add_argument("--batch", type=int, default=50, help="events per request / per raw batch")
    parser.add_argument("--levels", default="1,4,16")
    parser.add_argument("--replay", type=int, default=10_000)
    args = parser.parse_args()
    run = uuid.uuid4().hex[:8]
    work = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    bootstrap = args.bootstrap or f"127.0.0.1:{KAFKA_PORT}"
    kafka = KafkaConnection(bootstrap_servers=(bootstrap,))
    if not args.bootstrap:
        kafka_script("start", work / "kafka")
    gateway: subprocess.Popen[bytes] | None = None
    try:
        await ensure_topics(kafka, topics.ALL)
        env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", ""),
               "INGEST_APP_TOKEN": TOKEN, "CRON_SECRET": "bench-cron-secret-0123456789abcdef",
               "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "PORT": str(GATEWAY_PORT), "LOG_LEVEL": "WARNING",
               "FILE_BUFFER_DIR": str(work / "spool"), "RATE_LIMIT_EVENTS_PER_MIN": "100000000",
               "DATABASE_URL": database_url(), "REDIS_URL": redis_url()}
        gateway = subprocess.Popen([sys.executable, "-m", "ingestflow.app.cli", "gateway"], env=env,
                                   stdout=open(work / "gateway.log", "wb"), stderr=subprocess.STDOUT)
        await wait_health()
        await run_raw(kafka, 4, 1.0, args.batch, run)  # warm-up: topic metadata, connections
        await run_gateway(4, 1.0, args.batch, run)
        levels: list[dict[str, Any]] = []
        for c in (int(x) for x in args.levels.split(",")):
            raw = await run_raw(kafka, c, args.seconds, args.batch, run)
            gw = await run_gateway(c, args.seconds, args.batch, run)
            levels.append({"concurrency": c, "raw": raw, "gateway": gw,
                           "ratio": round(gw["events_per_s"] / raw["events_per_s"], 3)})
        replay = await run_replay(kafka, args.replay, run)
    finally:
        if gateway is not None:
            gateway.terminate()
            gateway.wait(30)
        if not args.bootstrap:
            kafka_script("stop", work / "kafka")
    result = {"run": run, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "batch": args.batch,
              "seconds_per_level": args.seconds, "cpus": os.cpu_count(), "levels": levels, "replay": replay}
    out = ROOT / "bench" / "results" / f"gateway-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(serde.dumps(result))
    print(f"{'conc':>4} {'raw ev/s':>10} {'raw p50':>8} {'raw p99':>8} {'gw ev/s':>10} {'gw p50':>8} "
          f"{'gw p99':>8} {'ratio':>6}")
    for lv in levels:
        r, g = lv["raw"], lv["gateway"]
        print(f"{lv['concurrency']:>4} {r['events_per_s']:>10} {r['p50_ms']:>7}ms {r['p99_ms']:>7}ms "
              f"{g['events_per_s']:>10} {g['p50_ms']:>7}ms {g['p99_ms']:>7}ms {lv['ratio']:>6}")
    print(f"spool replay: {replay['events']} events in {replay['replay_s']}s "
          f"({replay['replay_events_per_s']} events/s); written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
