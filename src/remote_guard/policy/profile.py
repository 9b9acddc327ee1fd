"""School profiles: a code of practice as data (``config/policies/*.toml``).

Each clause has a versioned id, one normative sentence, SHALL or SHOULD, its source section, and
either the rules that enforce it (with parameters) or, if no machine can check it, ``manual``
with the reason. A profile that cites a missing rule or a bad parameter is refused.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from remote_guard.rules.base import Rule


class ProfileError(Exception):
    """A profile cannot be used; ``str()`` names the file, the clause and the problem."""


class RuleBinding(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rule: str
    params: dict[str, Any] = Field(default_factory=dict)


class Clause(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-/]*$")
    version: int = Field(ge=1)
    text: str = Field(min_length=10)
    level: Literal["SHALL", "SHOULD"]
    source: str = Field(min_length=3)
    rules: tuple[RuleBinding, ...] = ()
    manual: str | None = None  # why no machine can check it
    # The id of another clause of the profile whose checks also cover this one (two sentences
    # of a code that one check enforces); findings cite that clause.
    covered_by: str | None = None

    @model_validator(mode="after")
    def _enforced_or_manual(self) -> Clause:
        if sum((bool(self.rules), bool(self.manual), bool(self.covered_by))) != 1:
            raise ValueError(
                "a clause needs exactly one of rules (how it is checked), manual (why it cannot "
                "be) or covered_by (the clause whose checks cover it)"
            )
        return self

    @property
    def ref(self) -> str:
        return f"{self.id}v{self.version}"


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    name: str
    school: str
    source_document: str
    version: str
    clauses: tuple[Clause, ...]

    @model_validator(mode="after")
    def _unique_clauses(self) -> Profile:
        seen: set[str] = set()
        for clause in self.clauses:
            if clause.id in seen:
                raise ValueError(f"clause {clause.id} appears twice")
            seen.add(clause.id)
        by_id = {clause.id: clause for clause in self.clauses}
        for clause in self.clauses:
            if clause.covered_by is None:
                continue
            target = by_id.get(clause.covered_by)
            if target is None:
                raise ValueError(
                    f"clause {clause.id}: covered_by {clause.covered_by!r} is not a clause of "
                    "this profile"
                )
            if target.covered_by is not None:
                raise ValueError(
                    f"clause {clause.id}: covered_by {clause.covered_by!r}, which is itself "
                    "covered by another clause; name that one"
                )
        return self

    def clause(self, clause_id: str) -> Clause:
        for clause in self.clauses:
            if clause.id == clause_id:
                return clause
        raise KeyError(clause_id)


class BoundRule(BaseModel):
    """A rule as one clause of a profile applies it: with validated parameters."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    profile_id: str
    clause: Clause
    rule_id: str
    params: BaseModel


class Policy(BaseModel):
    """What a tenant is checked against: the school's profile, then any added packs."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    profiles: tuple[Profile, ...]
    bound_rules: tuple[BoundRule, ...]
    sources: tuple[str, ...] = ()  # the file each profile came from

    @property
    def profile(self) -> Profile:
        """The school's own profile (packs come after it)."""
        return self.profiles[0]

    def rule_ids(self, *, stage: int | None = None, registry: Mapping[str, Rule]) -> set[str]:
        return {
            bound.rule_id
            for bound in self.bound_rules
            if stage is None or getattr(registry[bound.rule_id], "stage", 1) == stage
        }


def bind_rules(
    profile: Profile, registry: Mapping[str, Rule], *, source: str
) -> tuple[BoundRule, ...]:
    """Check every rule a profile cites exists and its parameters are valid.

    Raises:
        ProfileError: a rule is unknown or a parameter is wrong; names the clause and the fix.
    """
    bound: list[BoundRule] = []
    problems: list[str] = []
    for clause in profile.clauses:
        for binding in clause.rules:
            rule = registry.get(binding.rule)
            if rule is None:
                known = ", ".join(sorted(registry))
                problems.append(
                    f"clause {clause.id}: rule {binding.rule!r} does not exist (known rules: {known})"
                )
                continue
            try:
                params = rule.Params(**binding.params)
            except ValidationError as exc:
                for item in exc.errors():
                    where = ".".join(str(part) for part in item["loc"]) or "(params)"
                    problems.append(
                        f"clause {clause.id}: rule {binding.rule} parameter {where}: {item['msg']}"
                    )
                continue
            bound.append(
                BoundRule(profile_id=profile.id, clause=clause, rule_id=binding.rule, params=params)
            )
    if problems:
        raise ProfileError(f"{source}: the profile is refused.\n  - " + "\n  - ".join(problems))
    return tuple(bound)


def builtin_profile_dir() -> Path:
    """The ``config/policies`` folder of the source checkout (the shipped profiles)."""
    return Path(__file__).resolve().parents[3] / "config" / "policies"


def find_profile(name: str, dirs: Sequence[Path]) -> Path:
    """Locate a profile by name (``bramham-shadwell``) or path.

    Raises:
        ProfileError: no such profile in any of ``dirs`` or the shipped profiles.
    """
    candidate = Path(name)
    if candidate.suffix == ".toml" and candidate.is_file():
        return candidate
    searched = [*dirs, builtin_profile_dir()]
    for folder in searched:
        path = folder / f"{name}.toml"
        if path.is_file():
            return path
    raise ProfileError(
        f"no profile named {name!r}: looked for {name}.toml in "
        + ", ".join(str(folder) for folder in searched)
        + ". Set [policy] profile to one of the files in config/policies/."
    )


def load_profile(path: Path) -> Profile:
    """Read and validate a profile file (rules are bound separately, see :func:`bind_rules`).

    Raises:
        ProfileError: the file is unreadable, not TOML, or not a valid profile.
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProfileError(f"{path}: cannot be read ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise ProfileError(f"{path}: is not UTF-8 text ({exc.reason})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path}: is not valid TOML ({exc})") from exc
    header = data.pop("profile", {})
    if not isinstance(header, dict):
        raise ProfileError(f"{path}: [profile] must be a table")
    raw_clauses = data.pop("clauses", [])
    twice = sorted(set(header) & {"clauses", *data})
    if twice:
        raise ProfileError(
            f"{path}: {', '.join(twice)} is given both in [profile] and outside it; keep one"
        )
    try:
        return Profile(**header, clauses=raw_clauses, **data)
    except ValidationError as exc:
        lines = [f"{path}: the profile is not valid."]
        for item in exc.errors():
            loc = list(item["loc"])
            where = ".".join(str(part) for part in loc)
            if len(loc) >= 2 and loc[0] == "clauses" and isinstance(loc[1], int):
                clauses = raw_clauses if isinstance(raw_clauses, list) else []
                if 0 <= loc[1] < len(clauses) and isinstance(clauses[loc[1]], dict):
                    where = f"clause {clauses[loc[1]].get('id', loc[1])}" + (
                        "." + ".".join(str(p) for p in loc[2:]) if loc[2:] else ""
                    )
            lines.append(f"  - {where}: {item['msg'].removeprefix('Value error, ')}")
        raise ProfileError("\n".join(lines)) from exc


def load_policy(
    profile: str, packs: Sequence[str], dirs: Sequence[Path], registry: Mapping[str, Rule]
) -> Policy:
    """Find, read, validate and bind the school's profile and each pack.

    Raises:
        ProfileError: a profile or pack is missing or invalid, cites an unknown rule or a bad
            parameter, or two of them share an id.
    """
    profiles: list[Profile] = []
    bound: list[BoundRule] = []
    sources: list[str] = []
    for name in (profile, *packs):
        path = find_profile(name, dirs)
        loaded = load_profile(path)
        if any(existing.id == loaded.id for existing in profiles):
            raise ProfileError(f"{path}: profile id {loaded.id!r} is already in use")
        profiles.append(loaded)
        bound.extend(bind_rules(loaded, registry, source=str(path)))
        sources.append(str(path))
    return Policy(profiles=tuple(profiles), bound_rules=tuple(bound), sources=tuple(sources))
