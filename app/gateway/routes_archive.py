"""The archive's HTTP endpoints, the ones the previous service's users know.

Every route needs `x-cron-secret`: the management ones change what the workers do, and the read ones
return decrypted user data. Commands reach the worker that owns a user as control messages on the
records topic (ordered with that user's records); cron state and buffer figures live in PostgreSQL.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ingestflow.app.archive import ArchiveBackend, backend_for
from ingestflow.app.archive import cid as cids
from ingestflow.app.archive.crypto import Keyring, open_envelope, read_header
from ingestflow.app.archive.state import ArchiveState
from ingestflow.app.archive.transfer_logs import STATUSES, TransferLogs
from ingestflow.app.clients.db import Database
from ingestflow.app.clients.lifecycle import Clients
from ingestflow.app.clients.kafka import OutgoingMessage, Producer
from ingestflow.app.core import serde, tracing
from ingestflow.app.core.clock import Clock, SystemClock
from ingestflow.app.core.errors import IntegrityError, Unavailable, ValidationError
from ingestflow.app.core.settings import Settings
from ingestflow.app.web.http import json_response, read_json, require_secret, trace_id
from ingestflow.schemas import fields
from ingestflow.schemas import records as record_schema
from ingestflow.schemas.topics import RECORDS

__all__ = ["routes", "setup", "ArchiveGateway", "ARCHIVE"]

routes = web.RouteTableDef()
MAX_LOGS = 1000


@dataclass
class ArchiveGateway:
    settings: Settings
    clock: Clock
    backend: ArchiveBackend
    keyring: Keyring | None
    state: ArchiveState
    logs: TransferLogs
    producer: Producer

    def keys(self) -> Keyring:
        if self.keyring is None:
            raise Unavailable("LIGHTHOUSE_PRIVATE_KEY is not set: archived objects cannot be decrypted")
        return self.keyring


ARCHIVE = web.AppKey("archive", ArchiveGateway)


def setup(app: web.Application, settings: Settings, db: Database, clients: Clients,
          clock: Clock | None = None) -> None:
    """Registers the archive routes, and the clients they use with the gateway's others."""
    key = settings.lighthouse_private_key
    keyring = Keyring(key.get(), tuple(k.get() for k in settings.archive_old_keys)) if key else None
    archive = ArchiveGateway(
        settings=settings, clock=clock or SystemClock(), backend=backend_for(settings), keyring=keyring,
        state=ArchiveState(db, settings.worker_id, settings.cron_schedule), logs=TransferLogs(db),
        producer=Producer(settings.kafka, send_timeout=settings.kafka_send_timeout_s,
                          client_id="ingestflow-archive-gateway"))
    app[ARCHIVE] = archive
    clients.add("archive", archive.backend).add("archive control producer", archive.producer)
    app.add_routes(routes)


def _ctx(request: web.Request) -> ArchiveGateway:
    archive = request.app[ARCHIVE]
    require_secret(request, "x-cron-secret", archive.settings.cron_secret.get())
    return archive


def _int(raw: str | None, name: str, *, default: int | None = None, lo: int = 0, hi: int = fields.MAX_INT
         ) -> int | None:
    return default if raw is None or raw == "" else fields.ascii_int(raw, name, lo, hi)


# --- cron ---------------------------------------------------------------------------------------------

@routes.get("/cron/status")
async def cron_status(request: web.Request) -> web.Response:
    archive = _ctx(request)
    return json_response((await archive.state.cron()).to_json(archive.clock.now()))


@routes.post("/cron/start")
async def cron_start(request: web.Request) -> web.Response:
    archive = _ctx(request)
    return json_response((await archive.state.set_running(True)).to_json(archive.clock.now()))


@routes.post("/cron/stop")
async def cron_stop(request: web.Request) -> web.Response:
    archive = _ctx(request)
    return json_response((await archive.state.set_running(False)).to_json(archive.clock.now()))


@routes.put("/cron/schedule")
async def cron_schedule(request: web.Request) -> web.Response:
    archive = _ctx(request)
    body = await read_json(request, archive.settings.max_body_bytes, archive.settings.body_timeout_s)
    if not isinstance(body, dict):
        raise ValidationError("body", "must be a JSON object like {\"schedule\": \"0 */2 * * *\"}")
    state = await archive.state.set_schedule(body.get("schedule"))
    return json_response(state.to_json(archive.clock.now()))


@routes.post("/cron/trigger")
async def cron_trigger(request: web.Request) -> web.Response:
    """Flush every user now: one flush-all control to each partition of the records topic."""
    archive = _ctx(request)
    traced = tracing.headers(trace_id(request))
    await archive.producer.send_many([OutgoingMessage(RECORDS.name, key, record_schema.flush_all(), headers=traced)
                                      for key in record_schema.partition_keys(RECORDS.partitions)])
    return json_response({"triggered": True, "partitions": RECORDS.partitions}, status=202)


# --- buffer -------------------------------------------------------------------------------------------

@routes.get("/buffer/stats")
async def buffer_stats(request: web.Request) -> web.Response:
    archive = _ctx(request)
    partitions = await archive.state.stats()
    return json_response({"users": sum(p["users"] for p in partitions),
                          "records": sum(p["records"] for p in partitions),
                          "bufferSize": archive.settings.buffer_size, "partitions": partitions})


@routes.post("/buffer/process/{user_id}")
async def buffer_process(request: web.Request) -> web.Response:
    archive = _ctx(request)
    user_id = _int(request.match_info["user_id"], "user_id")
    assert user_id is not None
    key, value = record_schema.flush_user(user_id)
    await archive.producer.send_many([OutgoingMessage(RECORDS.name, key, value,
                                                      headers=tracing.headers(trace_id(request)))])
    return json_response({"queued": True, "user_id": user_id}, status=202)


# --- transfer logs ------------------------------------------------------------------------------------

@routes.get("/transfer/logs")
async def transfer_logs(request: web.Request) -> web.Response:
    archive = _ctx(request)
    q = request.query
    status = q.get("status") or None
    if status is not None and status not in STATUSES:
        raise ValidationError("status", f"must be one of {', '.join(STATUSES)}, got {status[:32]!r}")
    rows = await archive.logs.query(user_id=_int(q.get("user_id"), "user_id"), status=status,
                                    limit=_int(q.get("limit"), "limit", default=50, lo=1, hi=MAX_LOGS) or 50)
    return json_response({"logs": [r.to_json() for r in rows], "count": len(rows)})


# --- archived objects ---------------------------------------------------------------------------------

async def _fetch(archive: ArchiveGateway, request: web.Request) -> tuple[str, bytes]:
    cid = request.match_info["cid"]
    cids.parse_cid(cid)
    return cid, await archive.backend.get(cid)


def _decrypt(archive: ArchiveGateway, blob: bytes) -> tuple[Any, list[dict[str, Any]]]:
    header, plain = open_envelope(archive.keys(), blob)
    try:
        content = serde.loads(plain)
    except serde.DecodeError:
        raise IntegrityError("decrypted content is not JSON") from None
    if not (isinstance(content, list) and all(isinstance(g, dict) and g.get("user_id") == header.user_id
                                             for g in content)):
        raise IntegrityError("decrypted content does not belong to the user named in its header")
    return header, content


def _header_json(cid: str, blob: bytes, header: Any) -> dict[str, Any]:
    return {"cid": cid, "size": len(blob), "keyId": header.key_id.hex(), "userId": header.user_id,
            "batchId": header.batch_id.hex(), "records": header.count}


@routes.get("/lighthouse/{cid}")
async def lighthouse_content(request: web.Request) -> web.Response:
    archive = _ctx(request)
    user_filter = _int(request.query.get("user_id"), "user_id")
    uid_filter = request.query.get("website_uid") or None
    cid, blob = await _fetch(archive, request)
    header, content = _decrypt(archive, blob)
    groups = [g for g in content if user_filter is None or g["user_id"] == user_filter]
    if uid_filter is not None:
        groups = [{**g, "data": [r for r in g["data"] if r.get("website_uid") == uid_filter]} for g in groups]
    return json_response({**_header_json(cid, blob, header), "content": groups})


@routes.get("/lighthouse/{cid}/info")
async def lighthouse_info(request: web.Request) -> web.Response:
    archive = _ctx(request)
    cid, blob = await _fetch(archive, request)
    info = _header_json(cid, blob, read_header(blob))
    rows = await archive.logs.query_cid(cid)
    info["transfers"] = [r.to_json() for r in rows]
    return json_response(info)


@routes.get("/lighthouse/{cid}/validate")
async def lighthouse_validate(request: web.Request) -> web.Response:
    """Authenticates the object and checks its CID; a failure is reported, not raised, with the reason."""
    archive = _ctx(request)
    cid, blob = await _fetch(archive, request)
    expected = cids.expected_cids(blob)
    checks: dict[str, Any] = {"cid": cid, "size": len(blob),
                              "cidMatches": None if expected is None else cid in expected}
    try:
        header, content = _decrypt(archive, blob)
    except IntegrityError as exc:
        return json_response({**checks, "valid": False, "reason": exc.message})
    count = sum(len(g.get("data", [])) for g in content)
    valid = checks["cidMatches"] is not False and count == header.count
    reason = None if valid else ("CID does not match the content" if checks["cidMatches"] is False
                                 else f"header says {header.count} records, content has {count}")
    return json_response({**checks, **_header_json(cid, blob, header), "valid": valid, "reason": reason})


@routes.get("/lighthouse/{cid}/website-uids")
async def lighthouse_uids(request: web.Request) -> web.Response:
    archive = _ctx(request)
    cid, blob = await _fetch(archive, request)
    header, content = _decrypt(archive, blob)
    uids = [r.get("website_uid") for g in content for r in g.get("data", [])]
    return json_response({"cid": cid, "userId": header.user_id, "websiteUids": uids, "count": len(uids)})


