"""Scoring the findings of a scenario against its hand-written ground truth."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from remote_guard.fakegraph.scenario import ExpectationSpec, Scenario

BREACH = {"fail", "warn"}


def matches(expectation: ExpectationSpec, finding: dict[str, Any]) -> bool:
    if finding["rule"] != expectation.rule or finding["session"] != expectation.session:
        return False
    if expectation.subject is not None and finding["subject"] != expectation.subject:
        return False
    exempted = bool(finding.get("exempted"))
    if expectation.status == "exempted":
        return exempted and finding["status"] in BREACH
    if exempted:
        return False
    if expectation.status == "breach":
        return finding["status"] in BREACH
    return bool(finding["status"] == expectation.status)


def _expected_exempted(scenario: Scenario, finding: dict[str, Any]) -> bool:
    return any(e.status == "exempted" and matches(e, finding) for e in scenario.expect)


@dataclass
class RuleScore:
    true_positives: int = 0
    false_positives: int = 0
    false_negatives: int = 0

    @property
    def precision(self) -> float:
        found = self.true_positives + self.false_positives
        return self.true_positives / found if found else 1.0

    @property
    def recall(self) -> float:
        expected = self.true_positives + self.false_negatives
        return self.true_positives / expected if expected else 1.0


@dataclass
class Scores:
    by_rule: dict[str, RuleScore] = field(default_factory=dict)

    def score(
        self, scenario: Scenario, findings: list[dict[str, Any]], rules: set[str]
    ) -> list[str]:
        """Add one scenario's results; return the problems found (empty if it passes)."""
        problems: list[str] = []
        if scenario.scope:
            rules = rules & set(scenario.scope)
        # An exempted finding is not an open breach: it is scored only where the truth expects
        # it (status "exempted"), and then it must be there.
        produced = [
            f
            for f in findings
            if f["rule"] in rules
            and (f["status"] in BREACH or f["status"] == "error")
            and not (f.get("exempted") and not _expected_exempted(scenario, f))
        ]
        used: set[int] = set()
        for expectation in scenario.expect:
            score = self.by_rule.setdefault(expectation.rule, RuleScore())
            hit = next(
                (i for i, f in enumerate(produced) if i not in used and matches(expectation, f)),
                None,
            )
            if hit is None:
                score.false_negatives += 1
                problems.append(f"missing: {expectation.model_dump(exclude_none=True)}")
            else:
                used.add(hit)
                score.true_positives += 1
        for index, finding in enumerate(produced):
            if index in used:
                continue
            # A second finding for the same expectation's object would be a duplicate: also wrong.
            self.by_rule.setdefault(finding["rule"], RuleScore()).false_positives += 1
            problems.append(
                f"unexpected: {finding['rule']} {finding['status']} session={finding['session']} "
                f"subject={finding['subject']}: {finding['message']}"
            )
        for expectation in scenario.expect_absent:
            for finding in findings:
                if matches(expectation, finding):
                    problems.append(f"must be absent: {expectation.model_dump(exclude_none=True)}")
        return problems

    def table(self) -> list[str]:
        lines = [f"{'rule':<32} {'TP':>4} {'FP':>4} {'FN':>4} {'precision':>10} {'recall':>8}"]
        for rule, score in sorted(self.by_rule.items()):
            lines.append(
                f"{rule:<32} {score.true_positives:>4} {score.false_positives:>4} "
                f"{score.false_negatives:>4} {score.precision:>10.2f} {score.recall:>8.2f}"
            )
        return lines


SCORES = Scores()
