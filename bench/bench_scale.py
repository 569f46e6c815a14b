"""The worker as its state grows and as workers are added: memory and restart time against the distinct
event ids held, and one worker against two on the same backlog. A private broker (own data dir), the shared
PostgreSQL.

    python bench/bench_scale.py state --ids 1000000,5000000,10000000
    python bench/bench_scale.py changelog --history 500000 --live 100000
    python bench/bench_scale.py workers --events 200000

state: one worker is fed unique events (2,000 rules, random IPs, every id distinct, timestamped now so no
    window closes) until it holds each size of --ids; at each size, once its group has committed
    everything, the worker's RSS is read, then it is stopped (SIGTERM) and restarted, and the restart is timed
    from the new process to its group's commits reaching the end of `events` again (with 1,000 new events
    produced meanwhile, so the restarted worker must be processing). The changelog records the restarted
    worker read into its stores come from its metric ingestflow_table_restored_records_total, what RocksDB
    holds of its memory budget from ingestflow_table_memory_bytes. Figures are reported as ratios against the
    first size.
changelog: one worker (TABLE_EXPIRY_INTERVAL_S=5) is fed --history unique events stamped 30 days ago, whose
    dedup and view-guard windows have closed (DEDUP_RETENTION_DAYS=7: expired after 14 days; view guard after
    2), then --live unique events of now. Once its commits reached the end and the dedup-keys changelog holds
    exactly the live keys (expiry has written a tombstone for every closed one), both changelogs are read
    (what a new worker would restore): records and key+value bytes. Then the changelog topics are set to
    compact at once (segment.ms, min.cleanable.dirty.ratio, delete.retention.ms and min.compaction.lag.ms
    near 0) and read again after each 10,000 new events (Kafka never cleans the active segment, and drops a
    tombstone only at the cleaning after the one that kept it), until the broker's cleaner is through.
    Compared with the live keys the stores hold: a changelog that shrinks back to them, not to all history,
    shows expiry reaches the changelog too.
workers: the same backlog of unique events consumed by one worker, then (a new group) by two, each timed
    from its first worker having joined the group to the group's commits reaching the end of the backlog; the
    second worker joins the running group, as a worker added to a deployment does (and its join's rebalance is
    part of the time).

Results go to bench/results/scale-<time>.json and are printed.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import subprocess
import tempfile
import time
import uuid
from dataclasses import asdict, astuple, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from bench_pipeline import DSN, end_offsets, produce, wait_caught_up
from services import start_worker  # bench/services.py
from ingestflow.app.clients.db import migrate
from ingestflow.app.clients.kafka import ensure_topics, read_topic
from ingestflow.app.core import serde
from ingestflow.app.core.settings import KafkaConnection
from ingestflow.schemas import topics

ROOT = Path(__file__).resolve().parents[1]
KAFKA_PORT = 19320
PROBE = 1_000


def unique_events(run: str, start: int, n: int, at: datetime | None = None) -> list[tuple[bytes, bytes, int]]:
    now = at or datetime.now(timezone.utc)
    stamp, ms = now.isoformat().replace("+00:00", "Z"), int(now.timestamp() * 1000)
    records = []
    for i in range(start, start + n):
        rule = f"s{run}-{i % 2000}"
        ip = ".".join(str(random.randint(1, 254)) for _ in range(4))
        records.append((rule.encode(), serde.dumps({"id": f"{run}-{i}", "type": "VIEW", "ruleId": rule, "ts": stamp,
                                                    "ip": ip}), ms))
    return records


async def feed(bootstrap: str, run: str, start: int, n: int, chunk: int = 100_000, at: datetime | None = None) -> None:
    for first in range(start, start + n, chunk):
        await produce(bootstrap, unique_events(run, first, min(chunk, start + n - first), at))


def worker(bootstrap: str, app_id: str, work: Path, port: int, name: str,
           settings: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return start_worker(bootstrap, app_id, port, work, name, log_level="INFO", settings=settings)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmRSS")


async def caught_up(admin: AIOKafkaAdminClient, bootstrap: str, group: str,
                    procs: list[subprocess.Popen[bytes]]) -> float:
    """When the group's commits reached the current end of `events` (fails if a worker exits first)."""
    target = await end_offsets(bootstrap, ("events",))
    while True:
        check_alive(procs)
        try:
            return float(await wait_caught_up(admin, group, target, 10))
        except RuntimeError:
            continue


def check_alive(procs: list[subprocess.Popen[bytes]]) -> None:
    if any(proc.poll() is not None for proc in procs):
        raise RuntimeError("a worker exited; see its log in the work directory")


async def members(admin: AIOKafkaAdminClient, group: str, procs: list[subprocess.Popen[bytes]],
                  timeout: float = 600) -> None:
    """Until the group is stable with every worker of `procs` (fails if a worker exits first)."""
    n, deadline = len(procs), time.monotonic() + timeout
    while time.monotonic() < deadline:
        check_alive(procs)
        try:
            (resp,) = await admin.describe_consumer_groups([group])
            if resp.groups[0][2] == "Stable" and len(resp.groups[0][5]) == n:
                return
        except Exception:  # no coordinator yet on a cold broker
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError(f"group {group} not stable with {n} members")


async def metric(port: int, name: str) -> float:
    """The worker's own metric `name` from its /metrics, summed over its labels."""
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as response:
        text = await response.text()
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


async def state(bootstrap: str, work: Path, sizes: list[int], settings: dict[str, str]) -> dict[str, Any]:
    run = uuid.uuid4().hex[:6]
    group, port = f"bench-scale-{run}", KAFKA_PORT + 2
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    proc = worker(bootstrap, group, work, port, "state", settings)
    held, rows = 0, list[dict[str, Any]]()
    try:
        await members(admin, group, [proc])
        for size in sizes:
            started = time.monotonic()
            await feed(bootstrap, run, held, size - held)
            held = size
            await caught_up(admin, bootstrap, group, [proc])
            rate = round((size - (rows[-1]["ids"] if rows else 0)) / (time.monotonic() - started))
            await asyncio.sleep(5)
            rss = rss_mb(proc.pid)
            rocksdb = round(await metric(port, "ingestflow_table_memory_bytes") / 2**20)
            proc.terminate()  # a deploy's restart: the member leaves its group at once
            proc.wait(120)
            began = time.monotonic()
            proc = worker(bootstrap, group, work, port, "state", settings)
            await feed(bootstrap, run, held, PROBE)
            held += PROBE
            restart_s = round(await caught_up(admin, bootstrap, group, [proc]) - began, 1)
            read = int(await metric(port, "ingestflow_table_restored_records_total"))
            rows.append({"ids": size, "rss_mb": rss, "rocksdb_mb": rocksdb, "restart_s": restart_s, "recovery_read": read,
                         "events_per_s": rate})
            print(rows[-1], flush=True)
    finally:
        proc.terminate()
        proc.wait(60)
        await admin.close()
    base = rows[0]
    for row in rows:
        row["rss_ratio"] = round(row["rss_mb"] / base["rss_mb"], 3)
        row["restart_ratio"] = round(row["restart_s"] / base["restart_s"], 3)
    return {"rows": rows}


@dataclass
class ChangelogContent:
    records: int = 0
    tombstones: int = 0
    bytes: int = 0  # keys and values
    live_keys: int = 0  # keys whose last record is not a tombstone

    def add(self, other: ChangelogContent) -> ChangelogContent:
        return ChangelogContent(*(a + b for a, b in zip(astuple(self), astuple(other))))


async def changelog_content(bootstrap: str, topic: str) -> ChangelogContent:
    """What reading the changelog from its start (committed records only) finds."""
    content, last = ChangelogContent(), dict[bytes, bool]()
    async for batch in read_topic(KafkaConnection(bootstrap_servers=(bootstrap,)), topic):
        for record in batch:
            content.records += 1
            content.tombstones += record.value is None
            content.bytes += len(record.key or b"") + len(record.value or b"")
            last[record.key or b""] = record.value is not None
    content.live_keys = sum(last.values())
    return content


async def changelogs(bootstrap: str, topics_read: list[str]) -> ChangelogContent:
    total = ChangelogContent()
    for topic in topics_read:
        total = total.add(await changelog_content(bootstrap, topic))
    return total


async def changelog(bootstrap: str, work: Path, history: int, live: int, timeout: float = 900) -> dict[str, Any]:
    run = uuid.uuid4().hex[:6]
    group, port = f"bench-changelog-{run}", KAFKA_PORT + 2
    names = [f"{group}-{table}-changelog" for table in ("dedup-keys", "view-guard")]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    proc = worker(bootstrap, group, work, port, "changelog", {"TABLE_EXPIRY_INTERVAL_S": "5"})
    try:
        await members(admin, group, [proc])
        await feed(bootstrap, run, 0, history, at=datetime.now(timezone.utc) - timedelta(days=30))
        await feed(bootstrap, run, history, live)
        await caught_up(admin, bootstrap, group, [proc])
        deadline = time.monotonic() + timeout
        while (await changelog_content(bootstrap, names[0])).live_keys != live:  # expiry still at work
            check_alive([proc])
            if time.monotonic() > deadline:
                raise RuntimeError("the closed windows' keys were not all expired in time")
            await asyncio.sleep(5)
        before = await changelogs(bootstrap, names)
        print("expired, before compaction:", before, flush=True)
        await compact_now(admin, names)
        # A write after segment.ms rolls the active segment; the cleaner keeps a tombstone through one cleaning
        # and drops it at the next, which only more writes (1% of the log, min.cleanable.dirty.ratio) start.
        fed = history + live
        after = before
        while after.records > 1.1 * after.live_keys:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the changelogs were not compacted in time: {after}")
            await asyncio.sleep(2)
            await feed(bootstrap, run, fed, PROBE * 10)
            fed += PROBE * 10
            await caught_up(admin, bootstrap, group, [proc])
            await asyncio.sleep(20)  # the cleaner's back-off (log.cleaner.backoff.ms 15 s)
            after = await changelogs(bootstrap, names)
            print("compacting:", after, flush=True)
    finally:
        proc.terminate()
        proc.wait(60)
        await admin.close()
    return {"history_events": history, "live_events": fed - history, "written": asdict(before),
            "compacted": asdict(after), "compacted_to_live_records": round(after.records / after.live_keys, 3),
            "compacted_to_written_bytes": round(after.bytes / before.bytes, 3)}


async def compact_now(admin: AIOKafkaAdminClient, names: list[str]) -> None:
    """Has the broker compact these topics as soon as it can, keeping the configuration they were created with
    (AlterConfigs replaces a topic's whole configuration: without its cleanup.policy a changelog would not be
    compacted at all)."""
    TOPIC_CONFIG = 1  # a DescribeConfigs entry's source: set on the topic itself
    described = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name) for name in names])
    own = {resource[3]: {entry[0]: entry[1] for entry in resource[4] if entry[3] == TOPIC_CONFIG}
           for response in described for resource in response.resources}
    await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, configs={
        **own[name], "segment.ms": "1000", "min.cleanable.dirty.ratio": "0.01", "delete.retention.ms": "1",
        "min.compaction.lag.ms": "0"}) for name in names])


async def workers(bootstrap: str, work: Path, events: int) -> dict[str, Any]:
    run = uuid.uuid4().hex[:6]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    results: dict[str, Any] = {"events": events}
    try:
        await feed(bootstrap, run, 0, events)
        for n in (1, 2):
            group = f"bench-workers-{n}-{run}"  # a new group reads `events` from its start
            procs: list[subprocess.Popen[bytes]] = []
            try:
                for i in range(n):  # each joins a stable group, as workers added to a running deployment do
                    procs.append(worker(bootstrap, group, work, KAFKA_PORT + 3 + i, f"workers-{n}-{i}"))
                    await members(admin, group, procs)
                    if i == 0:
                        began = time.monotonic()  # the first member consumes from here, the others join it
                done = await caught_up(admin, bootstrap, group, procs)
            finally:
                for proc in procs:
                    proc.terminate()
                for proc in procs:
                    proc.wait(60)
            results[f"{n}_worker"] = {"seconds": round(done - began, 1), "events_per_s": round(events / (done - began))}
            print(n, results[f"{n}_worker"], flush=True)
    finally:
        await admin.close()
    results["ratio_2_to_1"] = round(results["2_worker"]["events_per_s"] / results["1_worker"]["events_per_s"], 3)
    return results


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    st = sub.add_parser("state")
    st.add_argument("--ids", default="500000,1000000,2000000")
    st.add_argument("--table-memory-mb", type=int, help="the worker's TABLE_MEMORY_MB (default: the setting's)")
    cl = sub.add_parser("changelog")
    cl.add_argument("--history", type=int, default=500_000)
    cl.add_argument("--live", type=int, default=100_000)
    wk = sub.add_parser("workers")
    wk.add_argument("--events", type=int, default=200_000)
    wk.add_argument("--partitions", type=int, default=12, help="of `events` and `rules` (EVENTS_PARTITIONS)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    bootstrap = f"127.0.0.1:{KAFKA_PORT}"
    kafka_env = {**os.environ, "KAFKA_PORT": str(KAFKA_PORT), "KAFKA_CONTROLLER_PORT": str(KAFKA_PORT + 1),
                 "KAFKA_DATA_DIR": str(work / "kafka")}
    subprocess.run([str(ROOT / "deploy" / "kafka.sh"), "start"], check=True, env=kafka_env)
    try:
        await migrate(DSN)
        partitions = getattr(args, "partitions", 4)
        await ensure_topics(KafkaConnection(bootstrap_servers=(bootstrap,)), topics.specs(partitions))
        result: dict[str, Any] = {"mode": args.mode, "cpus": os.cpu_count(), "events_partitions": partitions}
        if args.mode == "state":
            memory = {} if args.table_memory_mb is None else {"TABLE_MEMORY_MB": str(args.table_memory_mb)}
            result.update(await state(bootstrap, work, [int(x) for x in args.ids.split(",")], memory))
        elif args.mode == "changelog":
            result.update(await changelog(bootstrap, work, args.history, args.live))
        else:
            result.update(await workers(bootstrap, work, args.events))
        out = ROOT / "bench" / "results" / f"scale-{args.mode}-{time.strftime('%Y%m%dT%H%M%S')}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(serde.dumps(result).decode())
        print(serde.dumps(result).decode())
        print(f"written to {out}")
    finally:
        subprocess.run([str(ROOT / "deploy" / "kafka.sh"), "stop"], check=False, env=kafka_env)


if __name__ == "__main__":
    asyncio.run(main())
