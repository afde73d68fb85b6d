"""The rule registry, and the findings rules produce.

Example::

    from flyte_iap.manifest_check.registry import RULES

    rule = RULES["IAP001"]
    rule.severity, rule.title, rule.url

A rule is a small function decorated with :func:`rule`; it receives a :class:`Context` and yields
findings made with :meth:`Context.finding` (or :meth:`Context.missing` for a reference to an object
that is not in the input). The registry is filled when :mod:`flyte_iap.manifest_check` is imported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flyte_iap import DOCS_URL
from flyte_iap.manifest_check.loader import FieldPath, Manifest
from flyte_iap.manifest_check.topology import Topology

ERROR = "error"
WARNING = "warning"

#: Object annotation listing rule IDs (comma-separated) not to report on that object.
IGNORE_ANNOTATION = "flyte-iap/ignore"


@dataclass(frozen=True)
class Finding:
    """One problem in one object.

    ``object`` is ``Kind/namespace/name`` (``Kind/name`` when the manifest sets no namespace),
    ``file``/``line`` point at the field to change, ``url`` at the guide page that explains the fix.
    """

    rule: str
    severity: str
    object: str
    file: str
    line: int
    message: str
    fix: str
    url: str
    source: Manifest | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The finding as JSON-ready data (what ``--format json`` prints)."""
        return {
            "rule": self.rule,
            "severity": self.severity,
            "object": self.object,
            "file": self.file,
            "line": self.line,
            "message": self.message,
            "fix": self.fix,
            "url": self.url,
        }


@dataclass(frozen=True)
class Rule:
    """A registered check: what it looks for, how bad it is, how to fix it, where the guide explains it."""

    id: str
    name: str
    severity: str
    title: str
    description: str
    fix: str
    page: str
    check: Callable[[Context], Iterable[Finding | None]] = field(repr=False, compare=False)
    #: The fix for an object that is not Flyte's (no chart keys, no Flyte names); ``fix`` if empty.
    generic_fix: str = ""

    @property
    def url(self) -> str:
        """The guide page (``DOCS_URL`` + page) that a finding of this rule links to."""
        return f"{DOCS_URL}/{self.page}.html"


RULES: dict[str, Rule] = {}


def rule(
    rule_id: str,
    name: str,
    *,
    severity: str,
    title: str,
    page: str,
    description: str,
    fix: str,
    generic_fix: str = "",
) -> Callable[[Callable[[Context], Iterable[Finding | None]]], Callable[[Context], Iterable[Finding | None]]]:
    """Register the decorated function as rule ``rule_id`` (IDs and names must be unique)."""

    def register(
        check: Callable[[Context], Iterable[Finding | None]],
    ) -> Callable[[Context], Iterable[Finding | None]]:
        if rule_id in RULES or any(r.name == name for r in RULES.values()):
            raise ValueError(f"duplicate rule {rule_id} / {name}")
        if severity not in (ERROR, WARNING):
            raise ValueError(f"{rule_id}: severity must be {ERROR!r} or {WARNING!r}")
        RULES[rule_id] = Rule(
            rule_id,
            name,
            severity,
            title,
            _clean(description),
            _clean(fix),
            page,
            check,
            _clean(generic_fix),
        )
        return check

    return register


def _clean(text: str) -> str:
    return " ".join(text.split())


class Context:
    """What a rule sees: the topology of the input, and helpers that build findings for the current rule."""

    def __init__(self, topology: Topology, *, partial: bool = False, strict: bool = False) -> None:
        self.topology = topology
        self.index = topology.index
        self.partial = partial
        self.strict = strict
        self.rule: Rule | None = None
        # Name comparisons left for misspelling guesses: bounded, so a hostile input with thousands of
        # dangling references and thousands of names stays linear.
        self.guess_budget = [_GUESS_BUDGET]
        #: What several rules derive alike, computed once per check (keyed by the helper's name).
        self.memo: dict[str, Any] = {}

    def finding(
        self,
        obj: Manifest,
        message: str,
        *,
        at: FieldPath = (),
        fix: str | None = None,
        severity: str | None = None,
        line: int | None = None,
        flyte: bool = True,
    ) -> Finding:
        """A finding of the current rule on ``obj``, located at field ``at`` (or at ``line``).

        ``flyte=False`` says the object is not Flyte's: the rule's generic fix is used (no chart keys).
        """
        assert self.rule is not None
        default_fix = self.rule.fix if flyte or not self.rule.generic_fix else self.rule.generic_fix
        return Finding(
            rule=self.rule.id,
            severity=severity or self.rule.severity,
            object=obj.ref,
            file=obj.file,
            line=line if line is not None else obj.line_of(*at),
            message=message,
            fix=fix or default_fix,
            url=self.rule.url,
            source=obj,
        )

    def missing(self, obj: Manifest, at: FieldPath, kind: str, name: str, message: str) -> Finding | None:
        """A finding for a reference to a ``kind`` named ``name`` that is not in the input.

        Partial input is normal (the GKE objects often live apart from the Helm rendering), so it is a
        warning (an error with ``strict``), and nothing with ``partial``. A name is suggested only when
        one in the input is a likely misspelling (an edit distance of at most 2, or 1 for short names).
        """
        if self.partial:
            return None
        severity = ERROR if self.strict else WARNING
        close = _close_names(name, self.index.names(kind, obj.namespace), self.guess_budget)
        if close:
            detail = f"; did you mean {' or '.join(close)}?"
        else:
            detail = (
                f". If the {kind} is applied separately, check it together with these manifests "
                "(or pass --partial to skip references outside the input)."
            )
        return self.finding(obj, message + detail, at=at, severity=severity)


#: Names longer than this are not compared (the comparison is quadratic in the length).
_MAX_COMPARED = 253
#: Edit-distance computations allowed in one check.
_GUESS_BUDGET = 2_000


def _close_names(name: str, candidates: Iterable[str], budget: list[int]) -> list[str]:
    if len(name) > _MAX_COMPARED:
        return []
    limit = 1 if len(name) <= 4 else 2
    found = []
    for candidate in candidates:
        if candidate == name or abs(len(candidate) - len(name)) > limit or len(candidate) > _MAX_COMPARED:
            continue
        if budget[0] <= 0:
            break
        budget[0] -= 1
        if edit_distance(name, candidate, limit) <= limit:
            found.append(candidate)
    return sorted(found)[:3]


def edit_distance(a: str, b: str, limit: int) -> int:
    """Levenshtein distance between ``a`` and ``b``, or ``limit + 1`` once it is known to exceed it."""
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b)))
        if min(current) > limit:
            return limit + 1
        previous = current
    return previous[-1]


def ignored_rules(obj: Manifest | None) -> set[str]:
    """Rule IDs the object's ``flyte-iap/ignore`` annotation switches off."""
    if obj is None:
        return set()
    value: Mapping[str, str] = obj.annotations
    return {part.strip().upper() for part in value.get(IGNORE_ANNOTATION, "").split(",") if part.strip()}
