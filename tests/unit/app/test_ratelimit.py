"""Rate-limit decisions with a controlled clock; Redis unreachable here, so the in-process fallback decides
(the shared Redis path is proven in tests/integration/test_gateway_ratelimit.py)."""
from __future__ import annotations

from ingestflow.app.clients.redis_client import RedisClient
from ingestflow.app.core.clock import ManualClock
from ingestflow.app.web.ratelimit import LocalWindows, RateLimiter


async def limiter(clock: ManualClock, **limits: int) -> RateLimiter:
    redis = RedisClient("redis://127.0.0.1:1/0", timeout=0.2)  # nothing listens on port 1
    await redis.start()
    return RateLimiter(redis, clock, limits or {"events": 3, "crawl": 2})


async def test_allows_the_limit_then_refuses_with_headers_until_the_window_ends() -> None:
    clock = ManualClock(current=6_000_000.0 + 15)  # 15 s into a minute window
    rl = await limiter(clock)
    got = [await rl.hit("events", "203.0.113.1") for _ in range(4)]
    assert [d.allowed for d in got] == [True, True, True, False]
    assert [d.remaining for d in got] == [2, 1, 0, 0]
    assert got[-1].backend == "local"
    assert got[-1].headers() == {"RateLimit-Limit": "3", "RateLimit-Remaining": "0", "RateLimit-Reset": "45",
                                 "Retry-After": "45"}
    clock.advance(45)
    assert (await rl.hit("events", "203.0.113.1")).allowed


async def test_ips_and_endpoint_classes_have_separate_budgets() -> None:
    rl = await limiter(ManualClock(current=6_000_000.0))
    for _ in range(2):
        assert (await rl.hit("crawl", "198.51.100.1")).allowed
    assert not (await rl.hit("crawl", "198.51.100.1")).allowed
    assert (await rl.hit("crawl", "198.51.100.2")).allowed
    assert (await rl.hit("events", "198.51.100.1")).allowed


def test_local_windows_forget_old_windows_when_full() -> None:
    windows = LocalWindows(max_keys=2)
    windows.hit("a", 1)
    windows.hit("b", 1)
    assert windows.hit("c", 2) == 1  # window 1's keys are dropped to make room
    assert windows.hit("c", 2) == 2
    assert windows.hit("a", 2) == 1
