"""Fault injection: latency, a share of throttled or failing requests, and forced responses.

Everything here is mutable at run time (``state.faults``, ``state.inject``) so a test can turn
throttling on for one phase and off for the next. Random faults use a seeded RNG, so a run is
repeatable when requests arrive in the same order.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from remote_guard.fakegraph.scenario import FaultSpec


@dataclass
class FaultState:
    """The fault knobs in force now; starts from the scenario's ``faults`` section."""

    latency_ms: float = 0.0
    rate_429: float = 0.0
    rate_503: float = 0.0
    retry_after_seconds: float = 0.2
    token_lifetime_seconds: int = 3599
    page_size: int = 5
    # How long after a call ends its call record / attendance report appear. Graph's first
    # call record version usually lands within 15 minutes; the default 0 keeps tests quick.
    call_record_delay_seconds: float = 0.0
    attendance_report_delay_seconds: float = 0.0

    @classmethod
    def from_spec(cls, spec: FaultSpec) -> FaultState:
        return cls(
            latency_ms=spec.latency_ms,
            rate_429=spec.rate_429,
            rate_503=spec.rate_503,
            retry_after_seconds=spec.retry_after_seconds,
            token_lifetime_seconds=spec.token_lifetime_seconds,
            page_size=spec.page_size,
        )


@dataclass
class Injection:
    """Answer the next ``remaining`` requests whose path matches ``pattern`` with ``status``."""

    pattern: re.Pattern[str]
    status: int
    remaining: int
    retry_after: float | None
    method: str | None


@dataclass(frozen=True)
class Fault:
    """A fault to apply to one request instead of serving it."""

    status: int
    retry_after: float | None


def format_retry_after(seconds: float) -> str:
    """``Retry-After`` as Graph writes it: whole seconds without a point, else a decimal."""
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


class FaultPlan:
    """Decides, per request, whether a fault replaces the real answer."""

    def __init__(self, faults: FaultState, seed: int) -> None:
        self.faults = faults
        self._rng = random.Random(seed)
        self._injections: list[Injection] = []

    @property
    def rng(self) -> random.Random:
        """The seeded RNG, shared with other random choices (batch response order)."""
        return self._rng

    def inject(
        self,
        path_regex: str,
        status: int,
        count: int = 1,
        retry_after: float | None = None,
        *,
        method: str | None = None,
    ) -> None:
        """Force the next ``count`` responses whose path (with query) matches to ``status``.

        The regex is searched in the path as served, e.g. ``/v1.0/users/x/calendarView?...``;
        batch items are matched as ``/v1.0`` + their relative URL.

        Raises:
            re.error: ``path_regex`` is not a valid regular expression.
            ValueError: ``count`` is not positive.
        """
        if count < 1:
            raise ValueError("count must be at least 1")
        self._injections.append(
            Injection(
                pattern=re.compile(path_regex),
                status=status,
                remaining=count,
                retry_after=retry_after,
                method=method.upper() if method else None,
            )
        )

    def clear_injections(self) -> None:
        self._injections.clear()

    def take_injection(self, method: str, path: str) -> Fault | None:
        """The forced fault for this request, if one matches (and count it as used)."""
        for injection in self._injections:
            if injection.method is not None and injection.method != method.upper():
                continue
            if injection.remaining > 0 and injection.pattern.search(path):
                injection.remaining -= 1
                if injection.remaining == 0:
                    self._injections.remove(injection)
                retry_after = injection.retry_after
                if retry_after is None and injection.status in (429, 503):
                    retry_after = self.faults.retry_after_seconds
                return Fault(status=injection.status, retry_after=retry_after)
        return None

    def random_fault(self) -> Fault | None:
        """A random 429 or 503 at the configured rates, or ``None`` to serve the request."""
        rate_429 = self.faults.rate_429
        rate_503 = self.faults.rate_503
        if rate_429 <= 0 and rate_503 <= 0:
            return None
        draw = self._rng.random()
        if draw < rate_429:
            return Fault(status=429, retry_after=self.faults.retry_after_seconds)
        if draw < rate_429 + rate_503:
            return Fault(status=503, retry_after=self.faults.retry_after_seconds)
        return None
