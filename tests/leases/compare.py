"""Comparing what sharded polling stored with what one whole-tenant poll stored."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TypeVar

K = TypeVar("K")


def differences(
    current: Mapping[K, tuple[str, str]],
    reference: Mapping[K, tuple[str, str]],
    *,
    pattern_rules: Collection[str],
) -> list[str]:
    """The findings (key -> (rule, status)) that differ, described.

    One difference is not one: a finding of a pattern rule (stage 2) that only the sharded
    store has, retired (``not_applicable``). Shard 0 judges patterns over what is stored when it
    runs; a session judged before another shard had stored the earlier breaches passes, and
    once they are in its pass is retired in favour of the breach, which leaves the retired row.
    A single poller leaves the same row when those sessions come in over two polls.
    """
    found: list[str] = []
    for key in sorted(set(current) | set(reference), key=repr):
        mine, theirs = current.get(key), reference.get(key)
        if mine == theirs:
            continue
        if theirs is None and mine is not None:
            rule, status = mine
            if rule in pattern_rules and status == "not_applicable":
                continue
        found.append(f"{key}: {mine or 'absent'} where one whole poll has {theirs or 'nothing'}")
    return found
