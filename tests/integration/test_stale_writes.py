"""The analytics stores against stale writers: a worker that lost its partition mid-batch can write its
older absolute values (day totals, trending, a rule's author, a crawl item) after the new owner wrote newer
ones, and a replay of an old range writes old versions again; the newer ones must stay, in PostgreSQL and
in Redis."""
from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, datetime, timezone

import asyncpg
import pytest

from ingestflow.app.clients.db import Database
from ingestflow.app.clients.redis_client import RedisClient
from ingestflow.app.core.settings import Settings
from ingestflow.app.stores.crawl_store import CrawlStore
from ingestflow.app.stores.leaderboard_store import TRENDING_KEY, LeaderboardStore
from ingestflow.app.stores.metrics_store import MetricsStore
from ingestflow.schemas.crawl import CrawlItem

from ..conftest import BASE_ENV
from .conftest import DSN

DAY = date(2026, 11, 20)


@pytest.fixture
async def db() -> AsyncIterator[Database]:
    database = Database(DSN, max_size=1)
    yield database
    await database.stop()


async def test_a_stale_lower_day_total_never_replaces_a_newer_one(
        db: Database, pg: asyncpg.Connection, unique: str) -> None:
    store = MetricsStore(db, {"VIEW": 1.0, "COPY": 3.0})
    rule = f"ms{unique}"
    try:
        await store.upsert_rule_days([(rule, DAY, {"VIEW": 4, "COPY": 1})])
        await store.upsert_rule_days([(rule, DAY, {"VIEW": 9, "COPY": 2})])   # the new owner, further along
        await store.upsert_rule_days([(rule, DAY, {"VIEW": 6, "COPY": 2})])   # the old owner, late
        row = await pg.fetchrow("SELECT views, copies, score FROM rule_metric_daily WHERE rule_id = $1", rule)
        assert (row["views"], row["copies"], row["score"]) == (9, 2, 15.0)

        await store.upsert_rule_days([(rule, DAY, {"VIEW": 9, "COPY": 2})])   # a replay: same totals
        await store.upsert_rule_days([(rule, DAY, {"VIEW": 12, "COPY": 2, "SAVE": 1})])
        row = await pg.fetchrow("SELECT views, copies, saves, score FROM rule_metric_daily WHERE rule_id = $1", rule)
        assert (row["views"], row["copies"], row["saves"], row["score"]) == (12, 2, 1, 18.0)
    finally:
        await pg.execute("DELETE FROM rule_metric_daily WHERE rule_id = $1", rule)


async def test_a_stale_event_author_never_replaces_the_catalog_author(
        db: Database, pg: asyncpg.Connection, unique: str) -> None:
    store = MetricsStore(db, Settings().weights)
    rule = f"ms{unique}"
    try:
        await store.set_rule_authors([(rule, "ann", "catalog", "A rule")])
        await store.set_rule_authors([(rule, "eve", "event", None)])   # a late write from before the catalog
        row = await pg.fetchrow("SELECT author_id, source FROM rule_authors WHERE rule_id = $1", rule)
        assert (row["author_id"], row["source"]) == ("ann", "catalog")

        await store.set_rule_authors([(rule, None, "catalog", None)])   # the catalog's tombstone
        await store.set_rule_authors([(rule, "eve", "event", None)])    # now the event's author holds
        row = await pg.fetchrow("SELECT author_id, source FROM rule_authors WHERE rule_id = $1", rule)
        assert (row["author_id"], row["source"]) == ("eve", "event")
    finally:
        await pg.execute("DELETE FROM rule_authors WHERE rule_id = $1", rule)


async def test_a_stale_lower_trending_value_is_skipped_in_postgres_and_redis(
        db: Database, pg: asyncpg.Connection, unique: str) -> None:
    redis = RedisClient(BASE_ENV["REDIS_URL"])
    await redis.start()
    store = LeaderboardStore(db, redis, size=10)
    rule = f"ms{unique}"
    try:
        await store.set_rule_trending({rule: 12.5})
        await store.set_rule_trending({rule: 11.0})   # stale
        assert await pg.fetchval("SELECT log_score FROM rule_trending WHERE rule_id = $1", rule) == 12.5
        assert await redis.redis.zscore(TRENDING_KEY, rule) == 12.5
        await store.set_rule_trending({rule: 13.0})
        assert await pg.fetchval("SELECT log_score FROM rule_trending WHERE rule_id = $1", rule) == 13.0
        assert await redis.redis.zscore(TRENDING_KEY, rule) == 13.0
    finally:
        await pg.execute("DELETE FROM rule_trending WHERE rule_id = $1", rule)
        await redis.redis.zrem(TRENDING_KEY, rule)
        await redis.stop()


async def test_an_older_crawl_item_version_never_replaces_a_newer_one(
        db: Database, pg: asyncpg.Connection, unique: str) -> None:
    store = CrawlStore(db)
    source = f"ms{unique}"

    def version(title: str, hour: int) -> CrawlItem:
        return CrawlItem(source_id=source, external_id="x1", url="https://example.org/x1", title=title,
                         received_at=datetime(2026, 11, 20, hour, tzinfo=timezone.utc))
    try:
        await store.upsert([version("Second take", 12)], batch_ref="test")
        report = await store.upsert([version("First take", 9)], batch_ref="test")  # a replay of last week
        assert (report.updated, report.unchanged) == (0, 1)
        assert await pg.fetchval("SELECT title FROM crawl_items WHERE source_id = $1", source) == "Second take"
        report = await store.upsert([version("Third take", 15), version("First take", 9)], batch_ref="test")
        assert report.updated == 1
        assert await pg.fetchval("SELECT title FROM crawl_items WHERE source_id = $1", source) == "Third take"
    finally:
        await pg.execute("DELETE FROM crawl_items WHERE source_id = $1", source)


async def test_a_rule_day_written_without_its_author_known_still_refreshes_the_authors_day(
        db: Database, pg: asyncpg.Connection, unique: str) -> None:
    """The new owner of a partition replays a rule's events before its catalog record, so its catalog table
    has no author yet; the author the old owner already wrote to rule_authors must get the new totals."""
    store = MetricsStore(db, {"VIEW": 1.0, "COPY": 3.0})
    rule, author = f"ms{unique}", f"ms{unique}-ann"
    try:
        await store.upsert_rule_days([(rule, DAY, {"VIEW": 4})])
        await store.set_rule_authors([(rule, author, "catalog", None)])            # the old owner, then fenced
        await store.recompute_author_days({(author, DAY)})
        await store.upsert_rule_days([(rule, DAY, {"VIEW": 7, "COPY": 1})])       # the new owner's replay
        await store.recompute_author_days(set(), rule_days=[(rule, DAY)])         # author unknown to it
        row = await pg.fetchrow("SELECT views, copies, score FROM author_metric_daily"
                                " WHERE author_id = $1 AND day = $2", author, DAY)
        assert (row["views"], row["copies"], row["score"]) == (7, 1, 10.0)
    finally:
        await pg.execute("DELETE FROM rule_metric_daily WHERE rule_id = $1", rule)
        await pg.execute("DELETE FROM rule_authors WHERE rule_id = $1", rule)
        await pg.execute("DELETE FROM author_metric_daily WHERE author_id = $1", author)
