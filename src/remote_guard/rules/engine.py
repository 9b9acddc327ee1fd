"""Runs a profile's rules over a snapshot and turns what they saw into findings.

A broken SHALL is ``fail``, a broken SHOULD ``warn``; data a rule needs that could not be read
is ``error`` (never a pass); a rule that crashes is an ``error`` finding too, not a lost poll.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import structlog

from remote_guard.collect.snapshot import SessionSnapshot
from remote_guard.exemptions.exemption import ExemptionRef
from remote_guard.policy.profile import BoundRule
from remote_guard.rules.base import (
    Finding,
    Outcome,
    Rule,
    RuleContext,
    Severity,
    Status,
    Verdict,
)

log = structlog.get_logger(__name__)


def _status(verdict: Verdict, level: str) -> Status:
    if verdict is Verdict.BREACH:
        return Status.FAIL if level == "SHALL" else Status.WARN
    if verdict is Verdict.OK:
        return Status.PASS
    if verdict is Verdict.UNKNOWN:
        return Status.ERROR
    return Status.NOT_APPLICABLE


def _default_severity(rule: Rule, verdict: Verdict) -> Severity:
    if verdict is Verdict.BREACH:
        return rule.severity
    # A check that could not run hides whatever it would have found: worth a look, not a panic.
    return Severity.MEDIUM if verdict is Verdict.UNKNOWN else Severity.INFO


def evaluate_snapshot(
    snapshot: SessionSnapshot,
    *,
    bound_rules: Sequence[BoundRule],
    registry: Mapping[str, Rule],
    context: RuleContext,
    stage: int = 1,
) -> list[Finding]:
    """Evaluate every bound rule of ``stage`` against ``snapshot``.

    Stage 1 rules look at the snapshot; stage 2 rules look at patterns across sessions and get
    ``context.history`` (and ``context.current``, this session's stage 1 breaches).
    """
    findings: list[Finding] = []
    phase = snapshot.phase(context.now).value
    for bound in bound_rules:
        rule = registry[bound.rule_id]
        if getattr(rule, "stage", 1) != stage:
            continue
        missing = sorted(key for key in rule.requires if key in snapshot.missing)
        if missing:
            reasons = "; ".join(f"{key}: {snapshot.missing[key]}" for key in missing)
            outcomes = [
                Outcome(
                    verdict=Verdict.UNKNOWN,
                    observed=f"could not read {', '.join(missing)}",
                    message=(
                        f"{rule.title} could not be checked for this session because data it "
                        f"needs could not be read ({reasons})."
                    ),
                    next_step=(
                        "Check remote_guard's Graph permissions and the Teams application access "
                        "policy (remote-guard doctor); the check repeats on the next poll."
                    ),
                    evidence={"missing": {key: snapshot.missing[key] for key in missing}},
                    sources=tuple(missing),
                )
            ]
        else:
            try:
                outcomes = rule.evaluate(snapshot, replace(context, params=bound.params))
            except Exception as exc:
                log.exception("rule.crashed", rule=rule.id, session_id=snapshot.session_id)
                outcomes = [
                    Outcome(
                        verdict=Verdict.UNKNOWN,
                        observed=f"rule failed: {type(exc).__name__}",
                        message=f"{rule.title} failed while checking this session.",
                        next_step="Report this to the remote_guard maintainers with the log.",
                        evidence={"error": type(exc).__name__},
                        sources=("rule",),
                    )
                ]
        for outcome in outcomes:
            status = _status(outcome.verdict, bound.clause.level)
            findings.append(
                Finding(
                    rule_id=rule.id,
                    clause_id=bound.clause.id,
                    clause_version=bound.clause.version,
                    profile_id=bound.profile_id,
                    status=status,
                    severity=outcome.severity or _default_severity(rule, outcome.verdict),
                    session_id=snapshot.session_id,
                    subject_key=outcome.subject_key,
                    phase=phase,
                    observed=outcome.observed,
                    message=outcome.message,
                    next_step=outcome.next_step,
                    evidence=outcome.evidence,
                    sources=list(outcome.sources),
                    exemption=_exemption(snapshot, rule.id, outcome, status, context),
                )
            )
    return findings


def _exemption(
    snapshot: SessionSnapshot, rule_id: str, outcome: Outcome, status: Status, context: RuleContext
) -> ExemptionRef | None:
    """The active exemption covering a breach, if any. Errors are never exempted: an exemption
    waives a rule for an object, it does not excuse data that could not be read."""
    if status not in (Status.FAIL, Status.WARN):
        return None
    for exemption in context.registers.exemptions:
        if exemption.active(context.now) and exemption.applies(
            rule_id=rule_id, subject_key=outcome.subject_key, snapshot=snapshot
        ):
            return ExemptionRef(
                id=exemption.id,
                reason=exemption.reason,
                granted_by=exemption.granted_by,
                expires_at=exemption.expires_at,
            )
    return None
