"""The analytics topology on one Faust worker next to (a) a raw aiokafka loop doing the same dedup, view cap
and daily counting in plain Python, (b) the same pipeline in Quix Streams and (c) a bare Faust app that
only decodes; same broker, same run.

    python bench/bench_pipeline.py               # private Kafka on 19300 (own data dir), ~1.5 minutes
    python bench/bench_pipeline.py --events 20000 --bootstrap 127.0.0.1:19300
    python bench/bench_pipeline.py --backlog --events 300000 --runs 3    # consuming capacity, three runs
    python bench/bench_pipeline.py --backlog --events 100000 --runs 20 --pipelines faust   # stalls only

Each pipeline gets a fresh consumer group that starts at the current end of `events` and is given time to
join; then the same prepared stream (`--events` records over 64 rules and two days: views from 500 IPs,
copies, votes, 10% of records resent with the same idempotency key) is produced as fast as the broker
takes it, and we time until the group's committed offsets reach the end:

- events/s   = records / (last offset committed − first record sent)
- drain_ms   = last offset committed − last record sent: the end-to-end latency of the newest record,
               its commit included (raw commits each batch, Quix every second, the worker every second
               while behind and within 0.1 s of catching up).

A pipeline that keeps pace with the producer (the raw loop does) is then timed at the producer's rate. With
`--backlog` the whole stream is produced first and each pipeline is timed from joining its group to its
last commit: events/s = records / (last offset committed − group stable), its consuming capacity (startup
after the join, such as Faust's table recovery, is included, so small backlogs understate it).

(a) raw: aiokafka getmany batches, the same decode and decision functions (agents/dedup.py), dicts for
    state, the day totals upserted to PostgreSQL per batch, offsets committed per batch (at least once,
    state in memory only).
(b) quix: Quix Streams 3.28 Application, exactly-once, RocksDB state per rule, the same decisions; no
    PostgreSQL writes.
(c) bare: bench/bare_faust.py, a Faust app with the worker's own settings (app/worker/faust_app.py) whose agent
    takes `events` one record at a time as Faust delivers a topic and only decodes: Faust's per-record ceiling.
faust: the real `ingestflow worker` process: exactly-once, five RocksDB tables with changelogs, catalog
    join, trending, PostgreSQL day totals and author sums.

`--runs N` repeats the whole comparison N times, each run with its own groups and stream, because the
machines these run on are shared. A worker run that does not catch up within its timeout is recorded (not
fatal), and the watchdog's seeks of stalled partitions are counted from the worker's log.
Results go to bench/results/pipeline-<time>.json: every run's figures and ratios (faust / raw, faust / quix,
bare / raw: how far Faust itself goes, faust / bare: what chunked delivery gains net of the topology) and a
summary of each ratio's range and of the worker's stalls, which is also printed.
"""
from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata

from services import database_url, start_worker  # bench/services.py (run as a script from bench/)

from ingestflow.agents import dedup
from ingestflow.app.clients.db import Database, migrate
from ingestflow.app.clients.kafka import ensure_topics
from ingestflow.app.core import serde
from ingestflow.app.core.clock import utc_from_ms
from ingestflow.app.core.settings import KafkaConnection, Settings
from ingestflow.app.stores.metrics_store import MetricsStore
from ingestflow.schemas import topics
from ingestflow.schemas.events import decode

ROOT = Path(__file__).resolve().parents[1]
KAFKA_PORT = 19300
DSN = database_url()
# Event times within the last days: a record stamped (CreateTime) older than the broker's retention (7 days)
# is deleted at the broker's next retention check, read or not, which once left a partition of the backlog
# unread and the group's commits short of the end for good.
DAY0 = (datetime.now(timezone.utc) - timedelta(days=2)).replace(hour=0, minute=0, second=0, microsecond=0)
WORKER_TOPICS = ("events", "rules", "crawl-items", "stripe-webhooks", "website-records")


# --- the prepared stream ------------------------------------------------------------------------------

def prepare(n: int, run: str) -> list[tuple[bytes, bytes, int]]:
    kinds = ("VIEW", "VIEW", "VIEW", "VIEW", "COPY", "VOTE", "SAVE", "FORK")
    records: list[tuple[bytes, bytes, int]] = []
    for i in range(n):
        j = i if i % 10 else max(i - 7, 0)  # every 10th record resends an earlier one's key
        rule = f"b{run}-{j % 64}"
        ts = DAY0 + timedelta(seconds=(j * 3) % 172_800)
        value = {"id": f"{run}-{j}", "type": kinds[j % len(kinds)], "ruleId": rule, "ts": ts.isoformat(),
                 "ip": f"10.{j % 7}.{(j // 7) % 250}.{j % 2}", "idempotencyKey": f"{run}-{j}"}
        records.append((rule.encode(), serde.dumps(value), int(ts.timestamp() * 1000)))
    return records


async def produce(bootstrap: str, records: list[tuple[bytes, bytes, int]]) -> tuple[float, float]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=10, max_batch_size=262_144)
    await producer.start()
    try:
        started = time.monotonic()
        futures = [await producer.send("events", key=k, value=v, timestamp_ms=ts) for k, v, ts in records]
        await producer.flush()
        for f in futures:
            await f
        return started, time.monotonic()
    finally:
        await producer.stop()


# --- consumer-group bookkeeping -----------------------------------------------------------------------

async def end_offsets(bootstrap: str, names: tuple[str, ...]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(t, p) for t in names for p in sorted(consumer._client.cluster.partitions_for_topic(t) or ())]
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


async def start_at_end(bootstrap: str, group: str, names: tuple[str, ...]) -> None:
    ends = await end_offsets(bootstrap, names)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(ends))
        await consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in ends.items()})
    finally:
        await consumer.stop()


async def wait_members(admin: AIOKafkaAdminClient, group: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        (resp,) = await admin.describe_consumer_groups([group])
        if resp.groups[0][2] == "Stable" and resp.groups[0][5]:
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"group {group} did not become Stable")


async def wait_caught_up(admin: AIOKafkaAdminClient, group: str, target: dict[TopicPartition, int],
                         timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        committed = await admin.list_consumer_group_offsets(group, partitions=list(target))
        if all(committed.get(tp) is not None and committed[tp].offset >= end for tp, end in target.items()):
            return time.monotonic()
        await asyncio.sleep(0.05)
    raise RuntimeError(f"group {group} did not catch up within {timeout}s")


# --- (a) the raw aiokafka loop ------------------------------------------------------------------------

async def raw_pipeline(bootstrap: str, group: str, stop: asyncio.Event) -> None:
    """Same decisions as agents/rule_metrics.py, in dicts; day totals to PostgreSQL per batch."""
    consumer = AIOKafkaConsumer("events", bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                                max_poll_records=1000, auto_offset_reset="earliest")
    db = Database(DSN, max_size=2)
    store = MetricsStore(db, Settings().weights)
    retention = 7 * 86400.0
    seen: dict[tuple[str, str], float] = {}
    guard: dict[tuple[str, str, int], dedup.ViewState] = {}
    counts: dict[tuple[str, int], dict[str, int]] = {}
    await consumer.start()
    await db.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200, max_records=1000)
            touched: set[tuple[str, int]] = set()
            for messages in batch.values():
                for m in messages:
                    ts = m.timestamp / 1000
                    try:
                        ev = decode(m.value, utc_from_ms(m.timestamp))
                    except Exception:
                        continue
                    if ev.idempotency_key:
                        key = (ev.rule_id, ev.idempotency_key)
                        if dedup.key_seen((seen.get(key),), ts, retention):
                            continue
                        seen[key] = ts
                    day = int(ts // 86400)
                    if ev.type == "VIEW" and ev.ip:
                        today = guard.get((ev.rule_id, ev.ip, day), dedup.ViewState())
                        lookback = guard.get((ev.rule_id, ev.ip, int((ts - dedup.VIEW_REPEAT_S) // 86400)), today)
                        if dedup.view_drop_reason(today, lookback, ts):
                            continue
                        guard[(ev.rule_id, ev.ip, day)] = dedup.counted_view(today, ts)
                    c = counts.setdefault((ev.rule_id, day), {})
                    c[ev.type] = c.get(ev.type, 0) + 1
                    touched.add((ev.rule_id, day))
            if touched:
                await store.upsert_rule_days([(r, datetime.fromtimestamp(d * 86400, timezone.utc).date(),
                                               counts[(r, d)]) for r, d in touched])
            if batch:
                await consumer.commit()
    finally:
        await consumer.stop()
        await db.stop()


# --- (b) Quix Streams ---------------------------------------------------------------------------------

def quix_pipeline(bootstrap: str, group: str, state_dir: str) -> None:
    """Runs in its own process (Quix's Application.run() blocks and owns signals)."""
    from quixstreams import Application

    app = Application(broker_address=bootstrap, consumer_group=group, auto_offset_reset="earliest",
                      processing_guarantee="exactly-once", state_dir=state_dir, commit_interval=1.0,
                      loglevel="WARNING")
    topic = app.topic("events", key_deserializer="bytes", value_deserializer="bytes")
    retention = 7 * 86400.0

    def process(value: bytes, key: Any, timestamp: int, headers: Any, state: Any) -> None:
        ts = timestamp / 1000
        try:
            ev = decode(value, utc_from_ms(timestamp))
        except Exception:
            return
        if ev.idempotency_key:
            k = f"k:{ev.idempotency_key}"
            if dedup.key_seen((state.get(k),), ts, retention):
                return
            state.set(k, ts)
        day = int(ts // 86400)
        if ev.type == "VIEW" and ev.ip:
            today = dedup.ViewState.from_json(state.get(f"v:{ev.ip}:{day}"))
            back_day = int((ts - dedup.VIEW_REPEAT_S) // 86400)
            lookback = dedup.ViewState.from_json(state.get(f"v:{ev.ip}:{back_day}")) if back_day != day else today
            if dedup.view_drop_reason(today, lookback, ts):
                return
            state.set(f"v:{ev.ip}:{day}", dedup.counted_view(today, ts).to_json())
        ck = f"c:{day}:{ev.type}"
        state.set(ck, (state.get(ck) or 0) + 1)

    app.dataframe(topic).update(process, stateful=True, metadata=True)
    app.run()


# --- faust: the real worker ---------------------------------------------------------------------------

def faust_worker(bootstrap: str, app_id: str, work: Path,
                 command: tuple[str, ...] = ("-m", "ingestflow.app.cli", "worker")) -> subprocess.Popen[bytes]:
    return start_worker(bootstrap, app_id, 18390, work, "faust",
                        log_level=os.environ.get("BENCH_WORKER_LOG_LEVEL", "WARNING"), command=command)


# --- the run ------------------------------------------------------------------------------------------

async def measure(name: str, bootstrap: str, records: list[tuple[bytes, bytes, int]], group: str,
                  start: Callable[[], Any], stop: Callable[[Any], Awaitable[None]], timeout: float,
                  backlog: bool = False) -> dict[str, Any]:
    await start_at_end(bootstrap, group, ("events",) if name != "faust" else WORKER_TOPICS)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    before = await end_offsets(bootstrap, ("events",))
    if backlog:  # the whole stream waits in the topic before the pipeline starts
        sent_first, sent_last = await produce(bootstrap, records)
    handle = start()
    try:
        await wait_members(admin, group)
        if backlog:
            began = time.monotonic()
        else:
            await asyncio.sleep(2)  # let the first rebalance settle (Faust and Quix both assign in two steps)
            sent_first, sent_last = await produce(bootstrap, records)
            began = sent_first
        after = await end_offsets(bootstrap, ("events",))
        assert sum(after.values()) - sum(before.values()) == len(records)
        done = await wait_caught_up(admin, group, after, timeout)
    finally:
        await stop(handle)
        await admin.close()
    seconds = done - began
    result = {"events": len(records), "seconds": round(seconds, 2), "events_per_s": round(len(records) / seconds, 1),
              "produce_s": round(sent_last - sent_first, 2)}
    if not backlog:
        result["drain_ms"] = round((done - sent_last) * 1000, 1)
    print(f"{name:>6}: {result}", flush=True)
    return result


async def totals(prefix: str) -> list[tuple[Any, ...]]:
    """Day totals per rule suffix and day, for comparing two pipelines' PostgreSQL output."""
    db = Database(DSN, max_size=1)
    try:
        rows = await db.fetch("SELECT substr(rule_id, length($1) + 1) AS r, day, views, copies, saves, forks, votes"
                              " FROM rule_metric_daily WHERE rule_id LIKE $1 || '%' ORDER BY 1, 2", prefix)
        return [tuple(r) for r in rows]
    finally:
        await db.stop()


PIPELINES = ("raw", "quix", "bare", "faust")
RATIOS = {"ratio_faust_to_raw": ("faust", "raw"), "ratio_faust_to_quix": ("faust", "quix"),
          "ratio_bare_to_raw": ("bare", "raw"), "ratio_faust_to_bare": ("faust", "bare")}
STALL_LINE = "stalled at committed offset"  # the worker's watchdog seeking a partition back (app/worker/consumer.py)


async def one_run(bootstrap: str, work: Path, events: int, backlog: bool, pipelines: list[str]) -> dict[str, Any]:
    """Each pipeline of `pipelines` over its own copy of the stream, in order; the ratios between them."""
    run = uuid.uuid4().hex[:6]
    results: dict[str, Any] = {}

    async def faust_end(proc: subprocess.Popen[bytes]) -> None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()

    if "raw" in pipelines:
        raw_stop = asyncio.Event()

        def raw_start() -> asyncio.Task[None]:
            return asyncio.create_task(raw_pipeline(bootstrap, f"bench-raw-{run}", raw_stop))

        async def raw_end(task: asyncio.Task[None]) -> None:
            raw_stop.set()
            await task
        results["raw"] = await measure("raw", bootstrap, prepare(events, f"r{run}"), f"bench-raw-{run}",
                                       raw_start, raw_end, 120, backlog)
    if "quix" in pipelines:
        def quix_start() -> Any:  # a spawn context's process
            proc = multiprocessing.get_context("spawn").Process(
                target=quix_pipeline, args=(bootstrap, f"bench-quix-{run}", str(work / f"quix-{run}")), daemon=True)
            proc.start()
            return proc

        async def quix_end(proc: Any) -> None:
            proc.terminate()
            proc.join(20)
        results["quix"] = await measure("quix", bootstrap, prepare(events, f"q{run}"), f"bench-quix-{run}",
                                        quix_start, quix_end, 180, backlog)
    if "bare" in pipelines:  # Faust's own ceiling with the worker's settings, decoding only (bench/bare_faust.py)
        bare_id = f"bench-bare-{run}"
        bare_command = (str(ROOT / "bench" / "bare_faust.py"),)
        results["bare"] = await measure("bare", bootstrap, prepare(events, f"x{run}"), bare_id,
                                        lambda: faust_worker(bootstrap, bare_id, work, bare_command), faust_end, 240,
                                        backlog)
    if "faust" in pipelines:  # the whole topology
        app_id = f"bench-faust-{run}"
        log = work / "faust.log"
        stalls_before = log.read_text(errors="replace").count(STALL_LINE) if log.exists() else 0
        try:
            results["faust"] = await measure("faust", bootstrap, prepare(events, f"f{run}"), app_id,
                                             lambda: faust_worker(bootstrap, app_id, work), faust_end, 240, backlog)
        except RuntimeError as exc:  # did not catch up: a stalled partition, recorded rather than ending the runs
            results["faust"] = {"events": events, "caught_up": False, "error": str(exc)}
        results["faust"]["watchdog_seeks"] = log.read_text(errors="replace").count(STALL_LINE) - stalls_before
        if "raw" in pipelines and results["faust"].get("caught_up", True):
            # Same input shape, so the same day totals: the speed figures compare pipelines that agree.
            results["same_totals_faust_raw"] = await totals(f"bf{run}-") == await totals(f"br{run}-")
    for ratio, (top, bottom) in RATIOS.items():
        if "events_per_s" in results.get(top, {}) and "events_per_s" in results.get(bottom, {}):
            results[ratio] = round(results[top]["events_per_s"] / results[bottom]["events_per_s"], 3)
    return results


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each ratio's range over the runs, and the worker's stalls."""
    found: dict[str, Any] = {}
    for ratio in RATIOS:
        values = sorted(run[ratio] for run in runs if ratio in run)
        if values:
            found[ratio] = {"min": values[0], "median": values[len(values) // 2], "max": values[-1]}
    workers = [run["faust"] for run in runs if "faust" in run]
    if workers:
        found["faust_runs_not_caught_up"] = sum(1 for w in workers if not w.get("caught_up", True))
        found["faust_watchdog_seeks"] = sum(w["watchdog_seeks"] for w in workers)
    return found


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--bootstrap", help="an existing broker (default: a private one on 19300)")
    parser.add_argument("--backlog", action="store_true",
                        help="produce the whole stream first, then time each pipeline from joining its group to "
                             "its last commit: consuming capacity, not bounded by the producer")
    parser.add_argument("--runs", type=int, default=1, help="repeat the comparison; each run is reported")
    parser.add_argument("--pipelines", default=",".join(PIPELINES),
                        help="which of raw,quix,bare,faust to run (a ratio needs both of its pipelines)")
    args = parser.parse_args()
    pipelines = [name for name in args.pipelines.split(",") if name]
    unknown = set(pipelines) - set(PIPELINES)
    if unknown:
        parser.error(f"unknown pipelines: {', '.join(sorted(unknown))}")
    work = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    bootstrap = args.bootstrap or f"127.0.0.1:{KAFKA_PORT}"
    kafka_env = {**os.environ, "KAFKA_PORT": str(KAFKA_PORT), "KAFKA_CONTROLLER_PORT": str(KAFKA_PORT + 1),
                 "KAFKA_DATA_DIR": str(work / "kafka")}
    if not args.bootstrap:
        subprocess.run([str(ROOT / "deploy" / "kafka.sh"), "start"], check=True, env=kafka_env)
    try:
        await ensure_topics(KafkaConnection(bootstrap_servers=(bootstrap,)), topics.ALL)
        await migrate(DSN)
        runs = []
        for index in range(args.runs):
            runs.append(await one_run(bootstrap, work, args.events, args.backlog, pipelines))
            print(f"run {index + 1}/{args.runs}: " + ", ".join(f"{r} = {runs[-1][r]}" for r in RATIOS if r in runs[-1]),
                  flush=True)
        results: dict[str, Any] = {"events": args.events, "broker": bootstrap, "cpus": os.cpu_count(),
                                   "mode": "backlog" if args.backlog else "live", "runs": runs,
                                   "summary": summary(runs)}
        out = ROOT / "bench" / "results" / f"pipeline-{time.strftime('%Y%m%dT%H%M%S')}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(serde.dumps(results).decode())
        print(serde.dumps(results["summary"]).decode())
        print(f"written to {out}")
    finally:
        if not args.bootstrap:
            subprocess.run([str(ROOT / "deploy" / "kafka.sh"), "stop"], check=False, env=kafka_env)


if __name__ == "__main__":
    asyncio.run(main())
