"""Table `rule-trending`: per rule, the trending score in log space (agents/trending.py).

Key: ruleId (co-partitioned with `events`). Value: float L. Not windowed: the decay is in the value's
definition, so an idle rule's entry never needs rewriting; one number per rule.
"""
from __future__ import annotations

from typing import Any

import faust

__all__ = ["define"]


def define(app: faust.App, *, partitions: int) -> Any:
    return app.Table("rule-trending", default=None, partitions=partitions, key_type=str)
