"""The command line reads .env (under the environment), requires only what a command uses, and the first run
makes .env with random secrets, while the published example secrets are refused outside development."""
from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from ingestflow.app.core.settings import EXAMPLE_SECRETS, read_env_file

from ..conftest import BASE_ENV, ROOT

SECRETS = ("INGEST_APP_TOKEN", "CRON_SECRET", "LIGHTHOUSE_PRIVATE_KEY")


def ingestflow(*args: str, cwd: Path, env: dict[str, str] | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`ingestflow ...` as in a fresh shell: no settings in the environment but those given."""
    clean = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return subprocess.run([sys.executable, "-m", "ingestflow.app.cli", *args], cwd=cwd, env={**clean, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


def test_migrate_in_a_fresh_shell_reads_env_and_needs_no_token(services: None, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"DATABASE_URL={BASE_ENV['DATABASE_URL']}\n")
    done = ingestflow("migrate", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "database schema is up to date" in done.stdout or "applied" in done.stdout


def test_the_environment_wins_over_env_file(services: None, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DATABASE_URL=postgresql://ingestflow@127.0.0.1:1/nowhere\n")
    done = ingestflow("migrate", cwd=tmp_path, env={"DATABASE_URL": BASE_ENV["DATABASE_URL"]})
    assert done.returncode == 0, done.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    refused = ingestflow("--env-file", str(tmp_path / ".env"), "migrate", cwd=elsewhere)
    assert refused.returncode == 1 and refused.stderr.startswith("ingestflow migrate: ")  # the file's database
    assert "Traceback" not in refused.stderr


def test_first_run_makes_env_with_private_random_secrets(services: None, tmp_path: Path) -> None:
    made = subprocess.run([str(ROOT / "deploy" / "env.sh"), str(tmp_path / ".env")], capture_output=True, text=True,
                          check=True)
    assert str(tmp_path / ".env") in made.stdout and "0600" in made.stdout
    env_file = tmp_path / ".env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    values = read_env_file(env_file)
    example = read_env_file(ROOT / ".env.example")
    assert set(values) == set(example)
    for name in SECRETS:
        assert re.fullmatch(r"[0-9a-f]{64}", values[name]), name
        assert values[name] not in EXAMPLE_SECRETS and values[name] not in made.stdout
    assert values["DATABASE_URL"].rsplit("/", 1)[0] == BASE_ENV["DATABASE_URL"].rsplit("/", 1)[0]
    assert values["REDIS_URL"].rsplit("/", 1)[0] == BASE_ENV["REDIS_URL"].rsplit("/", 1)[0]
    other = tmp_path / "other.env"
    subprocess.run([str(ROOT / "deploy" / "env.sh"), str(other)], capture_output=True, check=True)
    assert all(read_env_file(other)[name] != values[name] for name in SECRETS)
    before = env_file.read_text()
    again = subprocess.run([str(ROOT / "deploy" / "env.sh"), str(env_file)], capture_output=True, text=True,
                           check=True)
    assert env_file.read_text() == before and "using the settings" in again.stdout
    # Every command works from that file alone, with the generated database password.
    done = ingestflow("migrate", cwd=tmp_path, env={"DATABASE_URL": values["DATABASE_URL"].rsplit("/", 1)[0]
                                                    + "/ingestflow_test"})
    assert done.returncode == 0, done.stderr
    done = ingestflow("migrate", cwd=tmp_path)
    assert done.returncode == 0, done.stderr


def test_published_example_secrets_are_refused_outside_development(services: None, tmp_path: Path) -> None:
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")
    refused = ingestflow("gateway", cwd=tmp_path, env={"PORT": "18615"}, timeout=60)
    assert refused.returncode == 2
    assert refused.stderr.startswith("ingestflow: configuration error: INGEST_APP_TOKEN: is the published example")
    assert all(secret not in refused.stderr for secret in EXAMPLE_SECRETS if len(secret) > 10)
    allowed = ingestflow("topics", cwd=tmp_path, env={"ALLOW_EXAMPLE_SECRETS": "1",
                                                      "KAFKA_BOOTSTRAP_SERVERS": BASE_ENV["KAFKA_BOOTSTRAP_SERVERS"]})
    assert allowed.returncode == 0, allowed.stderr
