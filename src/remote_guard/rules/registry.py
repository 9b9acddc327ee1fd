"""Finds the rules: every module in this package that defines ``RULE`` is one rule."""

from __future__ import annotations

import importlib
import pkgutil

from remote_guard.rules.base import Rule

# Modules of this package that are machinery, not rules.
_NOT_RULES = frozenset({"base", "engine", "registry"})


def load_rules() -> dict[str, Rule]:
    """Import every rule module and return its rule by id.

    Raises:
        RuntimeError: a rule module has no ``RULE``, or its id is not its module name.
    """
    import remote_guard.rules as package

    rules: dict[str, Rule] = {}
    for info in pkgutil.iter_modules(package.__path__):
        if info.name in _NOT_RULES or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        rule = getattr(module, "RULE", None)
        if rule is None:
            raise RuntimeError(f"rules/{info.name}.py defines no RULE")
        if rule.id != info.name:
            raise RuntimeError(f"rules/{info.name}.py: RULE.id is {rule.id!r}, not the module name")
        rules[rule.id] = rule
    return rules
