"""Which event a table read or write belongs to, set without disturbing the stream that buffers the next ones.

Faust's tables read and write the partition of the *current event*: a context variable of the running task.
`Stream._set_current_event` sets that variable and also the stream's `current_event` attribute, and
`take_events` reads the attribute as the event it is buffering once the agent hands back its batch: a new
record that arrives while an agent works on a batch waits for that hand-back, then takes whatever event the
agent set last. An agent that set it (to read or write its tables) made take_events buffer an old event in
place of the new one, and the new one was acknowledged unprocessed: lost, whenever a batch took long enough
for the next record to arrive meanwhile (a slow PostgreSQL, archive backend or network). Agents set the
context variable alone, through `for_tables`.
"""
from __future__ import annotations

import weakref
from typing import Any

from faust.streams import _current_event

__all__ = ["for_tables"]


def for_tables(event: Any) -> None:
    """Table operations of this task apply to `event`'s partition from now on."""
    _current_event.set(weakref.ref(event))
