"""Decisions of the deduplication and anti-gaming step, as pure functions the agent calls per event.

- An event id (its `idempotencyKey` when given) already seen on the same rule within the retention
  (DEDUP_RETENTION_DAYS) is a retry or a replay: dropped. Keys are scoped to their rule because the `events` topic is keyed by ruleId: the key state then
  lives on the event's own partition, with no repartitioning (a client resending an event resends its rule).
- A VIEW from the same IP on the same rule within 10 minutes of the last *counted* view is the same view:
  dropped. At most 5 views per IP per rule per UTC day are counted (the anti-gaming cap).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["VIEW_REPEAT_S", "VIEW_CAP_PER_DAY", "ViewState", "key_seen", "view_drop_reason", "counted_view"]

VIEW_REPEAT_S = 600.0
VIEW_CAP_PER_DAY = 5


@dataclass(frozen=True, slots=True)
class ViewState:
    """One (rule, IP) pair on one UTC day: views counted, and the time of the last counted one."""

    counted: int = 0
    last: float | None = None

    @classmethod
    def from_json(cls, raw: dict[str, float] | None) -> ViewState:
        if not raw:
            return cls()
        return cls(counted=int(raw.get("n", 0)), last=raw.get("last"))

    def to_json(self) -> dict[str, float]:
        return {"n": self.counted, "last": self.last if self.last is not None else 0.0}


def key_seen(last_seen: Iterable[float | None], ts: float, retention_s: float) -> bool:
    """True when the key was seen within `retention_s` of `ts`, on either side (records can arrive late)."""
    return any(seen and abs(ts - seen) <= retention_s for seen in last_seen)


def view_drop_reason(today: ViewState, lookback: ViewState, ts: float) -> str | None:
    """Why this view does not count ("repeat" or "cap"), or None when it counts.

    `lookback` is the state of the day 10 minutes before `ts` (the previous day just after midnight).
    """
    for state in (today, lookback):
        if state.last is not None and state.counted and abs(ts - state.last) < VIEW_REPEAT_S:
            return "repeat"
    if today.counted >= VIEW_CAP_PER_DAY:
        return "cap"
    return None


def counted_view(today: ViewState, ts: float) -> ViewState:
    return ViewState(counted=today.counted + 1, last=max(ts, today.last or ts))
