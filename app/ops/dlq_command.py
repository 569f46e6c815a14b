"""`ingestflow dlq list|show|redrive`: what an operator reads and does with dead letters (app/ops/dlq.py reads
them, app/ops/redrive.py sends them back)."""
from __future__ import annotations

import argparse
import asyncio
import base64
import sys
from datetime import datetime, timezone
from typing import Any

import asyncpg
from aiokafka.errors import KafkaError

from ingestflow.app.clients.db import Database
from ingestflow.app.core import serde
from ingestflow.app.core.clock import to_iso
from ingestflow.app.core.errors import IngestflowError
from ingestflow.app.core.settings import Settings
from ingestflow.app.stores.redrive_store import RedriveStore

from .dlq import DeadLetter, Scan, Selection, SourceRange, scan
from .progress import Progress, stop_on_interrupt
from .redrive import redrive

__all__ = ["add_arguments", "run", "letter_json", "summary_json", "render_list"]


def _time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 date or date-time: {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _range(text: str) -> SourceRange:
    try:
        return SourceRange.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(dlq: argparse.ArgumentParser) -> None:
    """The three commands of the `dlq` group, on its parser."""
    commands = dlq.add_subparsers(dest="dlq_command", required=True)
    filters = argparse.ArgumentParser(add_help=False)
    filters.add_argument("--topic", action="append", default=[], help="source topic (repeatable)")
    filters.add_argument("--error", action="append", default=[], help="error type, e.g. ValidationError (repeatable)")
    filters.add_argument("--worker", action="append", default=[],
                         help="WORKER_APP_ID of the workers that dead-lettered them (repeatable)")
    filters.add_argument("--since", type=_time, help="dead-lettered at or after (ISO-8601, UTC when no offset)")
    filters.add_argument("--until", type=_time, help="dead-lettered before (ISO-8601)")
    filters.add_argument("--record", action="append", default=[], type=_range, metavar="TOPIC:PARTITION:OFFSET[-LAST]",
                         help="source record(s) by their offset or offset range (repeatable)")
    ls = commands.add_parser("list", parents=[filters], help="counts by source topic and error type, then the "
                                                             "dead letters, newest last")
    ls.add_argument("--limit", type=int, default=50, help="dead letters listed (the counts cover all)")
    ls.add_argument("--json", action="store_true", help="one JSON object instead of text")
    show = commands.add_parser("show", help="one dead letter: its original key, value and headers, and its error")
    show.add_argument("id", type=_range, metavar="TOPIC:PARTITION:OFFSET", help="the source record, as `list` names it")
    show.add_argument("--since", type=_time, help="read the topic from this time on (faster on a long topic)")
    show.add_argument("--value", action="store_true", help="write only the original value's bytes to stdout")
    rd = commands.add_parser("redrive", parents=[filters], help="produce the selected dead letters again, unchanged, "
                                                               "to their source topic; never twice")
    rd.add_argument("--to", help="produce to this topic instead of each record's source topic")
    rd.add_argument("--all", action="store_true", help="select every dead letter (without a filter)")
    rd.add_argument("--dry-run", action="store_true", help="report what would be sent, send nothing")


def _selection(args: argparse.Namespace) -> Selection:
    return Selection(topics=frozenset(args.topic), errors=frozenset(args.error), workers=frozenset(args.worker),
                     since=args.since, until=args.until, records=tuple(args.record))


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Exit status 0 when done, 1 when `show` finds nothing, 2 when a dependency or the selection fails (the
    reason on stderr), 130 when a re-drive was interrupted."""
    try:
        if args.dlq_command == "list":
            return _list(settings, args)
        if args.dlq_command == "show":
            return _show(settings, args)
        return _redrive(settings, args)
    except (IngestflowError, KafkaError, asyncpg.UndefinedTableError) as exc:
        reason = exc.message if isinstance(exc, IngestflowError) else f"{type(exc).__name__}: {exc}"
        if isinstance(exc, asyncpg.UndefinedTableError):
            reason += " (run `ingestflow migrate` first)"
        elif isinstance(exc, KafkaError):
            reason = f"Kafka at {settings.kafka.bootstrap}: {reason}"
        print(f"ingestflow dlq {args.dlq_command}: {reason}", file=sys.stderr)
        return 2


def _list(settings: Settings, args: argparse.Namespace) -> int:
    found = asyncio.run(scan(settings.kafka, _selection(args), keep_values=False))
    found.letters.sort(key=lambda d: d.failure.at)
    shown = found.letters[-args.limit:] if args.limit > 0 else []
    if args.json:
        print(serde.dumps({**summary_json(found), "deadLetters": [letter_json(d) for d in shown]}).decode())
    else:
        print(render_list(found, shown))
    return 0


def _show(settings: Settings, args: argparse.Namespace) -> int:
    wanted: SourceRange = args.id
    if wanted.first != wanted.last:
        raise SystemExit("ingestflow dlq show: name one record, topic:partition:offset")
    found = asyncio.run(scan(settings.kafka, Selection(since=args.since, records=(wanted,))))
    if not found.letters:
        print(f"ingestflow dlq show: no dead letter of {wanted.topic}:{wanted.partition}:{wanted.first}"
              + (" (incomplete: some of its parts are missing)" if found.incomplete else ""), file=sys.stderr)
        return 1
    letter = found.letters[0]
    if args.value:
        sys.stdout.buffer.write(letter.source.value or b"")
        sys.stdout.buffer.flush()
        return 0
    print(serde.dumps_readable(letter_json(letter, with_bytes=True)).decode())
    return 0


def _redrive(settings: Settings, args: argparse.Namespace) -> int:
    selection = _selection(args)
    if selection == Selection() and not args.all:
        raise SystemExit("ingestflow dlq redrive: select dead letters (--topic, --error, --worker, --since, "
                         "--until, --record) or pass --all")

    async def go() -> int:
        db = Database(settings.database_url.get(), max_size=2)
        await db.connected()  # Unavailable, named, when PostgreSQL does not answer
        progress = Progress("redrive")
        try:
            with stop_on_interrupt() as stop:
                report = await redrive(settings.kafka, RedriveStore(db), selection, to=args.to, stop=stop,
                                       progress=progress, dry_run=args.dry_run)
        finally:
            await db.stop()
        if not args.dry_run:
            progress.finish()
        print(serde.dumps(report.to_json(args.dry_run)).decode())
        if not report.complete and not args.dry_run:
            print("interrupted: run the same command again; what was sent is not sent twice", file=sys.stderr)
            return 130
        return 0
    return asyncio.run(go())


def summary_json(found: Scan) -> dict[str, Any]:
    counts: dict[tuple[str, str], int] = {}
    for d in found.letters:
        counts[(d.source.topic, d.failure.type)] = counts.get((d.source.topic, d.failure.type), 0) + 1
    return {"total": len(found.letters), "counts": [{"topic": t, "errorType": e, "count": n}
                                                    for (t, e), n in sorted(counts.items())],
            "unreadable": found.unreadable, "incomplete": found.incomplete}


def letter_json(d: DeadLetter, *, with_bytes: bool = False) -> dict[str, Any]:
    """A dead letter for people and scripts; with its bytes, each shown as UTF-8 text when it is, else base64."""
    source, failure = d.source, d.failure
    out: dict[str, Any] = {
        "id": d.id, "topic": source.topic, "partition": source.partition, "offset": source.offset,
        "timestamp": datetime.fromtimestamp(source.timestamp_ms / 1000, timezone.utc).isoformat(),
        "at": failure.at.isoformat(), "errorType": failure.type, "field": failure.field, "message": failure.message,
        "worker": failure.worker, "size": d.size, "parts": d.parts, "copies": d.copies,
        "deadLetter": {"partition": d.location[0], "offset": d.location[1]}}
    if d.truncated:
        out["truncated"] = d.truncated
    if with_bytes:
        out["key"], out["value"] = _bytes(source.key), _bytes(source.value)
        out["headers"] = [{"name": name, **_bytes(value)} for name, value in source.headers]
    return out


def _bytes(data: bytes | None) -> dict[str, Any]:
    if data is None:
        return {"text": None}
    try:
        return {"text": data.decode("utf-8")}
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode()}


def render_list(found: Scan, shown: list[DeadLetter]) -> str:
    summary = summary_json(found)
    lines = [f"{summary['total']} dead letter(s)" + "".join(
        f", {n} {what}" for n, what in ((found.unreadable, "unreadable record(s)"),
                                        (found.incomplete, "incomplete split value(s)")) if n)]
    if summary["counts"]:
        lines += ["", f"{'source topic':<24} {'error type':<32} {'count':>7}"]
        lines += [f"{c['topic']:<24} {c['errorType']:<32} {c['count']:>7}" for c in summary["counts"]]
    if shown:
        lines += ["", f"{'dead-lettered at':<27} {'id':<28} {'error type':<24} {'field':<16} {'bytes':>8}  message"]
        lines += [f"{to_iso(d.failure.at):<27} {d.id:<28} {d.failure.type:<24} {d.failure.field or '-':<16} "
                  f"{d.size:>8}  {d.failure.message[:80]}" for d in shown]
        if len(shown) < len(found.letters):
            lines.append(f"(the last {len(shown)} of {len(found.letters)}; --limit for more)")
    return "\n".join(lines)
