"""The rule interface: one module per rule, pure ``evaluate(snapshot, context)``.

A rule says what it saw (:class:`Outcome`); the engine turns that into a :class:`Finding` with the
clause, level (SHALL/SHOULD) and version taken from the school's profile.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, datetime, time
from enum import StrEnum
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, Field

from remote_guard.collect.snapshot import Missing, SessionSnapshot
from remote_guard.consent.registers import Registers
from remote_guard.exemptions.exemption import ExemptionRef


class Status(StrEnum):
    FAIL = "fail"  # a SHALL was broken
    WARN = "warn"  # a SHOULD was broken
    ERROR = "error"  # the data needed could not be read: never a silent pass
    PASS = "pass"  # checked, and fine  # noqa: S105 (a status, not a password)
    NOT_APPLICABLE = "not_applicable"  # the clause does not apply to this session


OPEN_STATUSES = frozenset({Status.FAIL, Status.WARN, Status.ERROR})

# How far back second-stage rules can look for earlier breaches.
HISTORY_DAYS = 120


class Severity(StrEnum):
    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class Verdict(StrEnum):
    """What a rule concluded, before the profile's SHALL/SHOULD is applied."""

    BREACH = "breach"
    OK = "ok"
    UNKNOWN = "unknown"
    NOT_APPLICABLE = "not_applicable"


class Outcome(BaseModel):
    """One conclusion of a rule about one object in a session (a pupil, a joiner, the meeting)."""

    model_config = ConfigDict(frozen=True)

    verdict: Verdict
    subject_key: str = ""  # the object it is about; "" for the session as a whole
    observed: str
    message: str
    next_step: str = ""
    evidence: dict[str, Any] = Field(default_factory=dict)
    sources: tuple[str, ...] = ()
    severity: Severity | None = None  # overrides the rule's default where the facts warrant


class Finding(BaseModel):
    """A stored result: a rule applied to a session under one clause of a school's profile."""

    rule_id: str
    clause_id: str
    clause_version: int
    profile_id: str
    status: Status
    severity: Severity
    session_id: str
    subject_key: str = ""
    phase: str
    observed: str
    message: str
    next_step: str = ""
    evidence: dict[str, Any] = Field(default_factory=dict)
    sources: list[str] = Field(default_factory=list)
    exemption: ExemptionRef | None = None  # set when an active exemption covers this finding

    @property
    def exempted(self) -> bool:
        return self.exemption is not None

    @property
    def key(self) -> str:
        """A stable identity: the same rule, clause and object always give the same key, so
        re-polling never duplicates a finding."""
        material = "\x1f".join(
            (self.profile_id, self.rule_id, self.clause_id, self.session_id, self.subject_key)
        )
        return hashlib.sha256(material.encode("utf-8")).hexdigest()[:40]

    @property
    def clause_ref(self) -> str:
        return f"{self.clause_id}v{self.clause_version}"


class NoParams(BaseModel):
    """For rules that take no parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class SchoolDay:
    """The school day and terms, for rules about when contact may happen."""

    timezone: str
    start: time
    end: time
    weekdays: frozenset[int]
    terms: tuple[tuple[date, date], ...] = ()


@dataclass(frozen=True)
class PriorBreach:
    """A breach already found in another session, for rules about patterns over time."""

    rule_id: str
    session_id: str
    at: datetime  # when that session started
    subject_key: str  # the person (or object) the finding was about
    organizer_id: str | None  # who organised that session
    status: Status


@dataclass(frozen=True)
class PriorUnknown:
    """A check that could not be made in a session (an ``error`` finding), for rules about
    patterns over time: the data it could not read may hide a breach by someone in it."""

    rule_id: str
    session_id: str
    at: datetime  # when that session started
    subject_key: str  # the person (or object) the finding was about; "" for the whole session
    organizer_id: str | None  # who organised that session
    # For a finding about the whole session: who of the people the history was asked for took
    # part in it (any of them may be the one it hides a breach by).
    people: frozenset[str] = frozenset()


# What a second-stage rule knows of other sessions: breaches found, and checks that could not be
# made.
HistoryItem = PriorBreach | PriorUnknown


@dataclass(frozen=True)
class RuleContext:
    """What a rule may know besides the snapshot: the time, its parameters, the registers."""

    now: datetime
    tenant_id: str
    registers: Registers = field(default_factory=Registers)
    params: BaseModel = field(default_factory=NoParams)
    school_day: SchoolDay | None = None
    # Unexempted breaches of the people in this session, and the checks that could not be made
    # in sessions they took part in (or organised), this session's own included, from the
    # sessions of the last HISTORY_DAYS days; only second-stage rules get it.
    history: tuple[HistoryItem, ...] = ()
    # The e-mail domains of the school's own accounts (from the directory); empty if unknown.
    school_domains: frozenset[str] = frozenset()


class Rule(Protocol):
    """The shape every rule module's ``RULE`` object has."""

    id: ClassVar[str]
    title: ClassVar[str]
    clauses: ClassVar[tuple[str, ...]]  # catalogue clause ids this rule was written to enforce
    severity: ClassVar[Severity]
    requires: ClassVar[frozenset[Missing]]
    Params: ClassVar[type[BaseModel]]  # the parameters a profile may set, with their defaults
    # 1: evaluates the snapshot; 2: evaluates patterns, after every stage-1 rule of the poll ran
    stage: ClassVar[int]

    def evaluate(self, snapshot: SessionSnapshot, context: RuleContext) -> list[Outcome]:
        """Return the outcomes for ``snapshot``; pure, no I/O."""
        ...
