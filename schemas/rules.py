"""Topic `rules` (compacted): the rule catalog the main application produces, keyed by ruleId.

Value: `{"ruleId", "authorId", "title"?, "tags"?: [..]}`; a null value (tombstone) deletes the rule.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ingestflow.app.core import serde
from ingestflow.app.core.errors import ValidationError

from . import fields

__all__ = ["RuleInfo", "decode"]


@dataclass(frozen=True, slots=True)
class RuleInfo:
    rule_id: str
    author_id: str
    title: str | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)

    def encode(self) -> bytes:
        return serde.dumps({"ruleId": self.rule_id, "authorId": self.author_id, "title": self.title,
                            "tags": list(self.tags)})


def decode(payload: bytes) -> RuleInfo:
    try:
        raw = fields.obj(serde.loads(payload), "value")
    except serde.DecodeError as exc:
        raise ValidationError("value", f"is not valid JSON: {exc}") from None
    tags = raw.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ValidationError("tags", "must be an array of strings")
    return RuleInfo(rule_id=fields.string(raw, "ruleId", "", 128), author_id=fields.string(raw, "authorId", "", 128),
                    title=fields.opt_string(raw, "title", "", 1024), tags=tuple(tags))
