"""`ingestflow` command line: run the stack, the gateway or a worker, and migrate the database."""
from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys

from ingestflow.schemas import topics

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
    run_worker(settings)
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


COMMANDS = {"migrate": cmd_migrate, "topics": cmd_topics, "gateway": cmd_gateway, "worker": cmd_worker,
            "run": cmd_run}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ingestflow", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="migrate, create topics, run gateway and worker in the foreground")
    sub.add_parser("gateway", help="run the HTTP gateway")
    sub.add_parser("worker", help="run a Faust worker (more workers share the partitions)")
    sub.add_parser("migrate", help="apply database migrations (safe to run twice)")
    sub.add_parser("topics", help="create the Kafka topics")
    args = parser.parse_args(argv)
    settings = _settings()
    configure_logging(settings.log_level, _secrets(settings))
    return COMMANDS[args.command](settings, args)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
