"""`ingestflow` command line: run the stack, the gateway or a worker, and migrate the database.

Every command reads `.env` in the current directory (or --env-file) under the environment: a variable set in
the environment wins. A command requires only the settings it uses."""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import asyncpg

from ingestflow.app.clients.db import migrate
from ingestflow.app.clients.kafka import ensure_topics
from ingestflow.app.core import serde
from ingestflow.app.core.errors import ConfigError, IngestflowError
from ingestflow.app.core.observability import configure_logging
from ingestflow.app.core.settings import Settings
from ingestflow.app.ops.supervisor import CONFIG_ERROR_STATUS, RestartPolicy, Supervisor
from ingestflow.schemas import topics

__all__ = ["main"]


def _settings(env_file: Path, required: tuple[str, ...]) -> Settings:
    try:
        return Settings.from_env(env_file=env_file, required=required)
    except ConfigError as exc:
        print(f"ingestflow: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(CONFIG_ERROR_STATUS) from None


def cmd_migrate(settings: Settings, _: argparse.Namespace) -> int:
    applied = asyncio.run(migrate(settings.database_url.get()))
    print("applied: " + ", ".join(applied) if applied else "database schema is up to date")
    return 0


def cmd_topics(settings: Settings, _: argparse.Namespace) -> int:
    created = asyncio.run(ensure_topics(settings.kafka, topics.specs(settings.events_partitions)))
    print("created topics: " + ", ".join(created) if created else "all topics exist")
    return 0


def cmd_gateway(settings: Settings, _: argparse.Namespace) -> int:
    from ingestflow.app.gateway.app import run_gateway
    run_gateway(settings)
    return 0


def cmd_worker(settings: Settings, _: argparse.Namespace) -> int:
    from ingestflow.app.worker.app import run_worker
    try:
        run_worker(settings, settings.secrets())
    except ConfigError as exc:
        print(f"ingestflow: configuration error: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    """The whole job in the foreground: migrate, create topics, then gateway and worker, each restarted when
    it dies (app/ops/supervisor.py), until Ctrl-C."""
    cmd_migrate(settings, args)
    cmd_topics(settings, args)
    env_file = ["--env-file", str(args.env_file.resolve())] if args.env_file.is_file() else []
    base = [sys.executable, "-m", "ingestflow.app.cli", *env_file]
    policy = RestartPolicy(max_restarts=settings.run_max_restarts, window_s=settings.run_restart_window_s)
    return asyncio.run(Supervisor({role: [*base, role] for role in ("worker", "gateway")}, policy).run())


def _when(text: str, name: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SystemExit(f"ingestflow: --{name} must be an ISO-8601 date or date-time, got {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    from ingestflow.app.ops.progress import Checkpoint, Progress, stop_on_interrupt
    from ingestflow.app.ops.replay import replay

    start, end = _when(args.start, "from"), _when(args.end, "to") if args.end else None
    name = f"{args.topic}-{start:%Y%m%dT%H%M%S}-{(end or start):%Y%m%dT%H%M%S}-{args.into or args.topic}.json"
    checkpoint = Checkpoint(Path(args.state_dir) / name)

    async def go() -> int:
        progress = Progress(f"replay {args.topic}")
        with stop_on_interrupt() as stop:
            report = await replay(settings.kafka, args.topic, start, end, into=args.into,
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
    from ingestflow.app.clients.kafka import Producer
    from ingestflow.app.ops import importer
    from ingestflow.app.ops.progress import Progress

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
        producer = None if args.dry_run else Producer(settings.kafka, send_timeout=30.0,
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
    from ingestflow.app.clients.db import Database
    from ingestflow.app.clients.redis_client import RedisClient
    from ingestflow.app.ops.backfill import backfill
    from ingestflow.app.ops.progress import Checkpoint, Progress, stop_on_interrupt
    from ingestflow.app.stores.leaderboard_store import LeaderboardStore

    until = _when(args.until, "until").date() if args.until else datetime.now(timezone.utc).date()
    checkpoint = Checkpoint(Path(args.state_dir) / f"backfill-{until.isoformat()}-{args.days}.json")

    async def go() -> dict[str, Any]:
        db, redis = Database(settings.database_url.get()), RedisClient(settings.redis_url.get())
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
    from ingestflow.app.clients.db import Database
    from ingestflow.app.clients.redis_client import RedisClient
    from ingestflow.app.ops.retention import RetentionPolicy, run_retention

    policy = RetentionPolicy(settings.audit_retention_days, settings.transfer_log_retention_days,
                             settings.redis_retention_days)

    async def go() -> dict[str, object]:
        db, redis = Database(settings.database_url.get()), RedisClient(settings.redis_url.get())
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


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    """Exit 0 when nothing needs attention, 1 otherwise (the reasons are listed)."""
    from ingestflow.app.ops.status import Thresholds, collect, render

    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    gateway = None if args.no_gateway else args.gateway or f"http://{host}:{settings.port}"
    status = asyncio.run(collect(settings, group=args.group or settings.worker_id,
                                 topic_names=[spec.name for spec in topics.CONSUMED], gateway_url=gateway,
                                 thresholds=Thresholds(max_lag=args.max_lag)))
    print(serde.dumps(status.to_json()).decode() if args.json else render(status))
    return 1 if status.attention else 0


def cmd_dlq(settings: Settings, args: argparse.Namespace) -> int:
    """`dlq list|show|redrive` (app/ops/dlq_command.py)."""
    from ingestflow.app.ops.dlq_command import run
    return run(settings, args)


async def _aiter(rows: Any) -> Any:
    for row in rows:
        yield row


@dataclass(frozen=True)
class Command:
    run: Callable[[Settings, argparse.Namespace], int]
    help: str
    description: str
    example: str
    requires: tuple[str, ...] = ()


GATEWAY_NEEDS = ("INGEST_APP_TOKEN", "CRON_SECRET")
WORKER_NEEDS = ("LIGHTHOUSE_PRIVATE_KEY",)  # the worker encrypts every archive batch with it
COMMANDS = {
    "run": Command(cmd_run, "migrate, create topics, run gateway and worker, restarting them when they die",
                   "Applies the migrations, creates the topics, then runs the gateway and one worker as child "
                   "processes until Ctrl-C. A child that dies is restarted after a back-off; one that dies more "
                   "than RUN_MAX_RESTARTS times within RUN_RESTART_WINDOW_S seconds stops the run with a "
                   "non-zero status.", "ingestflow run", GATEWAY_NEEDS + WORKER_NEEDS),
    "gateway": Command(cmd_gateway, "run the HTTP gateway",
                       "Serves the ingest, read and operations endpoints on HOST:PORT.",
                       "PORT=8787 ingestflow gateway", GATEWAY_NEEDS),
    "worker": Command(cmd_worker, "run a Faust worker (more workers share the partitions)",
                      "Consumes the topics, keeps the tables and writes PostgreSQL, Redis and the archive; its "
                      "web port WORKER_PORT serves health, /metrics and the reads.",
                      "WORKER_PORT=6067 ingestflow worker", WORKER_NEEDS),
    "migrate": Command(cmd_migrate, "apply database migrations (safe to run twice)",
                       "Applies the SQL migrations not yet recorded in schema_migrations, each in its own "
                       "transaction.", "ingestflow migrate"),
    "topics": Command(cmd_topics, "create the Kafka topics",
                      "Creates the topics of schemas/topics.py that do not exist yet.", "ingestflow topics"),
    "replay": Command(cmd_replay, "re-produce a time range of a topic to rebuild derived state",
                      "Produces the records of a time range again (into the same topic or --into another); "
                      "the workers' deduplication keeps every event counted once. Resumable.",
                      "ingestflow replay --topic events --from 2026-11-01 --to 2026-11-02 --dry-run"),
    "backfill": Command(cmd_backfill, "recompute rule/author daily metrics and leaderboard snapshots",
                        "Recomputes the daily totals and leaderboard snapshots of past days from PostgreSQL. "
                        "Resumable.", "ingestflow backfill --days 7 --until 2026-11-30"),
    "retention": Command(cmd_retention, "remove audit/transfer rows and Redis keys past their ages",
                         "Deletes audit rows, transfer logs and Redis keys older than AUDIT_RETENTION_DAYS, "
                         "TRANSFER_LOG_RETENTION_DAYS and REDIS_RETENTION_DAYS.", "ingestflow retention --dry-run"),
    "import": Command(cmd_import, "produce the previous systems' exports to the topics",
                      "Validates an export of the previous systems and produces it to the topics (a copy of the "
                      "file is kept in --backup-dir first).", "ingestflow import events events.ndjson --dry-run"),
    "status": Command(cmd_status, "consumer lag and owners, spool, archive backlog, transfers, dependencies",
                      "Reads Kafka, the gateway and PostgreSQL directly (so it answers with every worker down) and "
                      "shows per partition the group's committed offset, end offset, lag and owner, the gateway's "
                      "spool, the archive backlog, transfer_logs pending and failed, and each dependency's state. "
                      "Exit status 1 when something needs attention.", "ingestflow status --json"),
    "dlq": Command(cmd_dlq, "list, show and re-drive dead letters",
                   "Reads the dead-letters topic without a consumer group: `list` groups them by source topic, "
                   "error type and time, `show` prints one with its original key, value and headers, `redrive` "
                   "sends a selection back unchanged to its source topic (or --to another), each at most once "
                   "(tracked in PostgreSQL).", "ingestflow dlq redrive --topic crawl-items --error ValidationError"),
}


def _version() -> str:
    try:
        return version("ingestflow")
    except PackageNotFoundError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ingestflow", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"ingestflow {_version()}")
    parser.add_argument("--env-file", type=Path, default=Path(".env"),
                        help="settings file read under the environment (default: .env, when it exists)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    parsers = {name: sub.add_parser(
        name, help=c.help, description=textwrap.fill(c.description, 100) + (
            f"\n\nRequires: {', '.join(c.requires)}." if c.requires else ""),
        epilog=f"example:\n  {c.example}", formatter_class=argparse.RawDescriptionHelpFormatter)
        for name, c in COMMANDS.items()}
    rp = parsers["replay"]
    rp.add_argument("--topic", required=True)
    rp.add_argument("--from", dest="start", required=True, help="ISO-8601 time (UTC when no offset)")
    rp.add_argument("--to", dest="end", help="ISO-8601 time, exclusive; default: the end of the topic")
    rp.add_argument("--into", help="produce into this topic instead of the source topic")
    rp.add_argument("--dry-run", action="store_true", help="show the offset ranges, produce nothing")
    rp.add_argument("--state-dir", default="data/replay", help="where resume checkpoints are kept")
    bf = parsers["backfill"]
    bf.add_argument("--days", type=int, required=True, help="how many past days, ending with --until")
    bf.add_argument("--until", help="last day to recompute (ISO date); default: today (UTC)")
    bf.add_argument("--dry-run", action="store_true", help="report what would be written, write nothing")
    bf.add_argument("--state-dir", default="data/backfill", help="where resume checkpoints are kept")
    rt = parsers["retention"]
    rt.add_argument("--dry-run", action="store_true", help="report what would be removed, remove nothing")
    im = parsers["import"]
    im.add_argument("kind", choices=("events", "crawl", "records"))
    im.add_argument("source", help="NDJSON/JSON file, or a PostgreSQL URL with --from-postgres")
    im.add_argument("--from-postgres", action="store_true", help="read the user_data_buffer table (records)")
    im.add_argument("--file-store", action="store_true", help="the file is an object of records keyed by id")
    im.add_argument("--dry-run", action="store_true", help="validate and report, produce nothing")
    im.add_argument("--backup-dir", default="data/import-backups", help="where a copy of the input is kept")
    st = parsers["status"]
    st.add_argument("--json", action="store_true", help="one JSON object instead of text")
    st.add_argument("--group", help="consumer group (default: WORKER_APP_ID)")
    st.add_argument("--gateway", help="gateway base URL (default: http://HOST:PORT)")
    st.add_argument("--no-gateway", action="store_true", help="do not ask a gateway for its spool")
    st.add_argument("--max-lag", type=int, default=1000, help="lag per partition that needs attention")
    from ingestflow.app.ops.dlq_command import add_arguments as add_dlq_arguments
    add_dlq_arguments(parsers["dlq"])
    args = parser.parse_args(argv)
    if args.env_file != Path(".env") and not args.env_file.is_file():
        parser.error(f"--env-file {args.env_file}: no such file")
    command = COMMANDS[args.command]
    settings = _settings(args.env_file, command.requires)
    configure_logging(settings.log_level, settings.secrets())
    try:
        return command.run(settings, args)
    except (OSError, IngestflowError, asyncpg.PostgresError) as exc:  # a dependency down or refusing: one line
        print(f"ingestflow {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
