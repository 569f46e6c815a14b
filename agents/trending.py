"""Trending score: exponentially decayed, weighted activity.

    score(now) = Σ_i  w(type_i) · 2^(−(now − t_i) / H)

with H the half-life (TRENDING_HALF_LIFE_HOURS, default 24) and w the per-type weights (EVENT_WEIGHTS,
default VIEW=1, COPY=3, SAVE=2, FORK=4, VOTE=2). An event H hours old weighs half as much as a fresh one.

It is stored as L = log2(Σ_i w_i · 2^((t_i − EPOCH) / H)), the score referred to a fixed epoch and taken in
log space: adding an event is a log-sum, no stored value ever needs a decay update, values written at
different times rank directly against each other (score(now) = 2^(L − (now − EPOCH)/H) is monotonic in L),
and an author's L is the log-sum of its rules' L. Log space keeps the numbers finite for centuries.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["EPOCH", "add_event", "log_sum", "decayed"]

EPOCH = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def add_event(log_score: float | None, ts: float, weight: float, half_life_s: float) -> float | None:
    """The stored value after one more event of `weight` at `ts` (unchanged when the weight is 0)."""
    if weight <= 0:
        return log_score
    term = math.log2(weight) + (ts - EPOCH) / half_life_s
    return term if log_score is None else log_sum((log_score, term))


def log_sum(values: Iterable[float]) -> float:
    """log2(Σ 2^v), computed without overflow."""
    items = list(values)
    top = max(items)
    return top + math.log2(sum(2.0 ** (v - top) for v in items))


def decayed(log_score: float, now: float, half_life_s: float) -> float:
    """The score as of `now`."""
    score: float = 2.0 ** (log_score - (now - EPOCH) / half_life_s)  # float ** float is typed Any
    return score
