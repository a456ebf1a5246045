"""Rules: event + conditions + actions, the one engine of routing (and later prefetch and
workflow rules; ARCHITECTURE.md section 4).

A rule fires on an event (an instance stored, a study become stable) when every one of
its conditions holds for the object: a condition names an attribute by keyword (or one of
the association's values, ``CallingAETitle`` and ``CalledAETitle``) and a pattern, matched
exactly, as a DICOM wildcard (``*`` and ``?``, PS3.4 C.2.2.2.4) or as a regular
expression. Its actions say what to do: forward by C-STORE to a node (optionally in one
transfer syntax), or by STOW-RS to a DICOMweb server.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from openpacs.domain.errors import InvalidQuery


class RuleEvent(StrEnum):
    INSTANCE = "instance"  # each instance as it is stored
    STABLE = "stable"  # a study once no instance arrived for routing.stable_after_seconds


class MatchKind(StrEnum):
    EXACT = "exact"
    WILDCARD = "wildcard"
    REGEX = "regex"


#: values of the association, not of the object
ASSOCIATION_KEYS = ("CallingAETitle", "CalledAETitle")


@dataclass(frozen=True)
class Condition:
    """``keyword`` matches ``pattern`` (``kind``: exact, wildcard or regular expression)."""

    keyword: str
    pattern: str
    kind: MatchKind = MatchKind.WILDCARD

    def holds(self, values: list[str]) -> bool:
        """Whether any of the attribute's values matches (an absent attribute matches only
        an empty exact pattern or ``*``)."""
        candidates = values or [""]
        if self.kind is MatchKind.EXACT:
            return any(v == self.pattern for v in candidates)
        if self.kind is MatchKind.WILDCARD:
            return any(fnmatch.fnmatchcase(v, self.pattern) for v in candidates)
        expression = re.compile(self.pattern)
        return any(expression.fullmatch(v) for v in candidates)

    def to_json(self) -> dict[str, str]:
        return {"keyword": self.keyword, "pattern": self.pattern, "kind": str(self.kind)}

    @classmethod
    def parse(cls, text: str) -> Condition:
        """``Keyword=pattern`` (wildcard), ``Keyword==value`` (exact), ``Keyword~=regex``."""
        for separator, kind in (("~=", MatchKind.REGEX), ("==", MatchKind.EXACT), ("=", MatchKind.WILDCARD)):
            keyword, found, pattern = text.partition(separator)
            if found:
                return cls.of(keyword.strip(), pattern, kind)
        raise InvalidQuery(f"a condition is Keyword=pattern, Keyword==value or Keyword~=regex, not {text!r}")

    @classmethod
    def of(cls, keyword: str, pattern: str, kind: MatchKind | str) -> Condition:
        from openpacs.domain.tags import tag_of

        if not keyword:
            raise InvalidQuery("a condition names an attribute: Keyword=pattern")
        if keyword not in ASSOCIATION_KEYS:
            try:
                tag_of(keyword)
            except (KeyError, ValueError) as exc:
                raise InvalidQuery(f"{keyword!r} is not a DICOM keyword (nor CallingAETitle, CalledAETitle)") from exc
        kind = MatchKind(kind)
        if kind is MatchKind.REGEX:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise InvalidQuery(f"{pattern!r} is not a regular expression: {exc}") from exc
        if len(pattern) > 1000:
            raise InvalidQuery("a pattern has 1000 characters at most")
        return cls(keyword, pattern, kind)


class ActionKind(StrEnum):
    FORWARD = "forward"  # C-STORE to a node
    STOW = "stow"  # STOW-RS to a DICOMweb server
    PREFETCH = "prefetch"  # fetch the patient's prior studies from a node (C-FIND, C-MOVE to us)


@dataclass(frozen=True)
class Action:
    """What a rule does: send to ``node`` (C-STORE) or to ``url`` (STOW-RS); or prefetch from
    ``node`` the patient's ``priors`` newest prior studies (of ``modalities``, if given, and
    at most ``max_age_days`` old, if given). A C-STORE forward may ask the node for storage
    commitment (``commit``), and delete here what it committed to (``delete_after``)."""

    kind: ActionKind
    node: str = ""
    url: str = ""
    transfer_syntax: str = ""  # "" = what the destination accepts, the stored syntax first
    priors: int = 0
    modalities: str = ""  # comma-separated
    max_age_days: int = 0
    commit: bool = False  # forward: ask the node for storage commitment once the study is delivered
    delete_after: bool = False  # forward: delete here what the node committed to (needs commit)
    lossy: str = ""  # forward: send a lossy copy in this transfer syntax (made once, stored, hidden)
    quality: int = 0  # lossy: the JPEG-LS NEAR value, or the JPEG 2000 compression ratio

    @property
    def destination(self) -> str:
        """The queue of this action: jobs to one destination share its lease."""
        if self.kind is ActionKind.STOW:
            return f"stow:{self.url}"
        return f"{'node' if self.kind is ActionKind.FORWARD else 'retrieve'}:{self.node}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": str(self.kind)}
        for name in (
            "node",
            "url",
            "transfer_syntax",
            "priors",
            "modalities",
            "max_age_days",
            "commit",
            "delete_after",
            "lossy",
            "quality",
        ):
            value = getattr(self, name)
            if value:
                out[name] = value
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Action:
        return cls(
            ActionKind(data["kind"]),
            data.get("node", ""),
            data.get("url", ""),
            data.get("transfer_syntax", ""),
            int(data.get("priors", 0)),
            data.get("modalities", ""),
            int(data.get("max_age_days", 0)),
            bool(data.get("commit", False)),
            bool(data.get("delete_after", False)),
            str(data.get("lossy", "")),
            int(data.get("quality", 0)),
        )


@dataclass
class Rule:
    """A routing rule, stored in the database (``route_rule``), managed by REST and CLI."""

    name: str
    event: RuleEvent
    conditions: list[Condition]
    actions: list[Action]
    enabled: bool = True
    priority: int = 0
    description: str = ""
    pk: int | None = None
    created_at: Any = None
    updated_at: Any = None
    source: str = "api"  # "configuration" for rules seeded from the file

    def matches(self, values: dict[str, list[str]]) -> bool:
        """Whether every condition holds for an object (keyword -> its values as text)."""
        return all(c.holds(values.get(c.keyword, [])) for c in self.conditions)

    def keywords(self) -> set[str]:
        return {c.keyword for c in self.conditions}

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "event": str(self.event),
            "conditions": [c.to_json() for c in self.conditions],
            "actions": [a.to_json() for a in self.actions],
            "enabled": self.enabled,
            "priority": self.priority,
            "description": self.description,
            "source": self.source,
        }


@dataclass
class RuleSet:
    """The enabled rules of one event, as one snapshot."""

    rules: list[Rule] = field(default_factory=list)

    def matching(self, values: dict[str, list[str]]) -> list[Rule]:
        return [r for r in self.rules if r.matches(values)]
