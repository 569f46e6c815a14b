"""`ingestflow` command line: run the stack, the gateway or a worker, and migrate the database."""
from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ingestflow.schemas import topics

from . import serde
from .db import migrate
from .errors import ConfigError
from .kafka import ensure_topics
from .observability import configure_logging
from .settings import Settings

__all__ = ["main"]


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as exc:
        print(f"ingestflow: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _secrets(settings: Settings) -> list[str]:
    values = [settings.ingest_app_token, settings.cron_secret, settings.stripe_webhook_secret,
              settings.lighthouse_api_key, settings.lighthouse_private_key]
    return [v.get() for v in values if v]


def cmd_migrate(settings: Settings, _: argparse.Namespace) -> int:
    applied = asyncio.run(migrate(settings.database_url.get()))
    print("applied: " + ", ".join(applied) if applied else "database schema is up to date")
    return 0


def cmd_topics(settings: Settings, _: argparse.Namespace) -> int:
    created = asyncio.run(ensure_topics(settings.kafka_bootstrap, topics.ALL))
    print("created topics: " + ", ".join(created) if created else "all topics exist")
    return 0


def cmd_gateway(settings: Settings, _: argparse.Namespace) -> int:
    from .gateway import run_gateway
    run_gateway(settings)
    return 0


def cmd_worker(settings: Settings, _: argparse.Namespace) -> int:
    from .worker import run_worker
    run_worker(settings, _secrets(settings))
    return 0


def cmd_run(settings: Settings, _: argparse.Namespace) -> int:
    """The whole job in the foreground: migrate, create topics, then gateway and worker until Ctrl-C."""
    cmd_migrate(settings, _)
    cmd_topics(settings, _)
    children = [subprocess.Popen([sys.executable, "-m", "ingestflow.app.cli", role]) for role in ("worker", "gateway")]

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    codes = [child.wait() for child in children]
    return max(abs(c) for c in codes) if any(codes) else 0


def _when(text: str, name: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SystemExit(f"ingestflow: --{name} must be an ISO-8601 date or date-time, got {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    from .progress import Checkpoint, Progress, stop_on_interrupt
    from .replay import replay

    start, end = _when(args.start, "from"), _when(args.end, "to") if args.end else None
    name = f"{args.topic}-{start:%Y%m%dT%H%M%S}-{(end or start):%Y%m%dT%H%M%S}-{args.into or args.topic}.json"
    checkpoint = Checkpoint(Path(args.state_dir) / name)

    async def go() -> int:
        progress = Progress(f"replay {args.topic}")
        with stop_on_interrupt() as stop:
            report = await replay(settings.kafka_bootstrap, args.topic, start, end, into=args.into,
                                  checkpoint=checkpoint, stop=stop, progress=progress, dry_run=args.dry_run)
        progress.finish()
        ranges = {r.partition: [r.start, r.end] for r in report.ranges}
        print(serde.dumps({"topic": report.topic, "into": report.into, "ranges": ranges, "total": report.total,
                           "produced": report.produced, "complete": report.complete,
                           "dryRun": args.dry_run}).decode())
        if not report.complete and not args.dry_run:
            print(f"interrupted: run the same command again to resume (state in {checkpoint.path})",
                  file=sys.stderr)
            return 130
        return 0
    return asyncio.run(go())


def cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    from . import importer
    from .kafka import Producer
    from .progress import Progress

    now = datetime.now(timezone.utc)
    report = importer.ImportReport(kind=args.kind, source=args.source, dry_run=args.dry_run)
    if args.from_postgres:
        source: Any = importer.read_user_data_buffer(args.source)
        report.source = "user_data_buffer"
    else:
        path = Path(args.source)
        if not path.is_file():
            raise SystemExit(f"ingestflow: no such file: {path}")
        report.backup = str(importer.backup(path, Path(args.backup_dir), now))
        rows = importer.read_file_store(path) if args.file_store else importer.read_file(path)
        source = _aiter(rows)

    async def go() -> None:
        producer = None if args.dry_run else Producer(settings.kafka_bootstrap, send_timeout=30.0,
                                                      client_id="ingestflow-import")
        progress = Progress(f"import {args.kind}")
        try:
            await importer.run_import(args.kind, source, report, producer, progress)
        finally:
            if producer is not None:
                await producer.stop()
        progress.finish()
    asyncio.run(go())
    print(serde.dumps(report.to_json(), ).decode())
    return 1 if report.rejected else 0


def cmd_backfill(settings: Settings, args: argparse.Namespace) -> int:
    from .backfill import backfill
    from .db import Database
    from .leaderboard_store import LeaderboardStore
    from .progress import Checkpoint, Progress, stop_on_interrupt
    from .redis_client import RedisClient

    until = _when(args.until, "until").date() if args.until else datetime.now(timezone.utc).date()
    checkpoint = Checkpoint(Path(args.state_dir) / f"backfill-{until.isoformat()}-{args.days}.json")

    async def go() -> dict[str, Any]:
        db, redis = Database(settings.database_url.get()), RedisClient(settings.redis_url)
        await db.start()
        await redis.start()
        progress = Progress("backfill days")
        try:
            with stop_on_interrupt() as stop:
                return await backfill(db, LeaderboardStore(db, redis, size=settings.leaderboard_size),
                                      settings.weights, until=until, days=args.days, dry_run=args.dry_run,
                                      checkpoint=checkpoint, stop=stop, progress=progress)
        finally:
            progress.finish()
            await redis.stop()
            await db.stop()
    report = asyncio.run(go())
    print(serde.dumps(report).decode())
    if not report["complete"]:
        print(f"interrupted: run the same command again to resume (state in {checkpoint.path})", file=sys.stderr)
        return 130
    return 0


def cmd_retention(settings: Settings, args: argparse.Namespace) -> int:
    from .db import Database
    from .redis_client import RedisClient
    from .retention import RetentionPolicy, run_retention

    policy = RetentionPolicy(settings.audit_retention_days, settings.transfer_log_retention_days,
                             settings.redis_retention_days)

    async def go() -> dict[str, object]:
        db, redis = Database(settings.database_url.get()), RedisClient(settings.redis_url)
        await db.start()
        await redis.start()
        try:
            report = await run_retention(db, redis, policy, datetime.now(timezone.utc), dry_run=args.dry_run)
        finally:
            await redis.stop()
            await db.stop()
        return report.to_json()
    print(serde.dumps(asyncio.run(go())).decode())
    return 0


async def _aiter(rows: Any) -> Any:
    for row in rows:
        yield row


COMMANDS = {"migrate": cmd_migrate, "topics": cmd_topics, "gateway": cmd_gateway, "worker": cmd_worker,
            "run": cmd_run, "replay": cmd_replay, "import": cmd_import,
            "retention": cmd_retention, "backfill": cmd_backfill}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ingestflow", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="migrate, create topics, run gateway and worker in the foreground")
    sub.add_parser("gateway", help="run the HTTP gateway")
    sub.add_parser("worker", help="run a Faust worker (more workers share the partitions)")
    sub.add_parser("migrate", help="apply database migrations (safe to run twice)")
    sub.add_parser("topics", help="create the Kafka topics")
    rp = sub.add_parser("replay", help="re-produce a time range of a topic to rebuild derived state")
    rp.add_argument("--topic", required=True)
    rp.add_argument("--from", dest="start", required=True, help="ISO-8601 time (UTC when no offset)")
    rp.add_argument("--to", dest="end", help="ISO-8601 time, exclusive; default: the end of the topic")
    rp.add_argument("--into", help="produce into this topic instead of the source topic")
    rp.add_argument("--dry-run", action="store_true", help="show the offset ranges, produce nothing")
    rp.add_argument("--state-dir", default="data/replay", help="where resume checkpoints are kept")
    bf = sub.add_parser("backfill", help="recompute rule/author daily metrics and leaderboard snapshots")
    bf.add_argument("--days", type=int, required=True, help="how many past days, ending with --until")
    bf.add_argument("--until", help="last day to recompute (ISO date); default: today (UTC)")
    bf.add_argument("--dry-run", action="store_true", help="report what would be written, write nothing")
    bf.add_argument("--state-dir", default="data/backfill", help="where resume checkpoints are kept")
    rt = sub.add_parser("retention", help="remove audit/transfer rows and Redis keys past their ages")
    rt.add_argument("--dry-run", action="store_true", help="report what would be removed, remove nothing")
    im = sub.add_parser("import", help="produce the previous systems' exports to the topics")
    im.add_argument("kind", choices=("events", "crawl", "records"))
    im.add_argument("source", help="NDJSON/JSON file, or a PostgreSQL URL with --from-postgres")
    im.add_argument("--from-postgres", action="store_true", help="read the user_data_buffer table (records)")
    im.add_argument("--file-store", action="store_true", help="the file is an object of records keyed by id")
    im.add_argument("--dry-run", action="store_true", help="validate and report, produce nothing")
    im.add_argument("--backup-dir", default="data/import-backups", help="where a copy of the input is kept")
    args = parser.parse_args(argv)
    settings = _settings()
    configure_logging(settings.log_level, _secrets(settings))
    return COMMANDS[args.command](settings, args)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
