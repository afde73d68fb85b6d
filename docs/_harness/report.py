"""What each block did, collected on the workers and counted on the controller.

An evaluator calls :func:`record` with a kind (``"python"``, ``"console:run"``, ``"yaml:k8s"``,
``"include:helm-values"`` ...). ``docs/conftest.py`` moves the kinds recorded during a test into the
test report's ``user_properties`` (they travel from xdist workers to the controller) and
:class:`Tally` turns the reports into the summary line that ``nox -s docs`` prints.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

# Kinds whose block counts as "ran" (something was executed) rather than "validated".
RUN_PREFIXES = ("python", "doctest", "console:run")
NOTEBOOK = "notebook"

_recorded: list[str] = []


def record(kind: str) -> None:
    """Note that the block being evaluated did ``kind``."""
    _recorded.append(kind)


def take() -> list[str]:
    """The kinds recorded since the last call (one test's worth)."""
    kinds = list(_recorded)
    _recorded.clear()
    return kinds


@dataclass
class Tally:
    ran: int = 0
    validated: int = 0
    notebook: int = 0
    skipped: int = 0
    failed: int = 0
    other_tests: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    skip_reasons: list[str] = field(default_factory=list)
    checker: set[str] = field(default_factory=set)

    def add(self, *, is_block: bool, outcome: str, kinds: list[str], where: str, reason: str = "") -> None:
        if outcome == "skipped":
            self.skipped += 1
            self.skip_reasons.append(f"{where}: {reason}")
            return
        if outcome == "failed":
            self.failed += 1
            return
        if not is_block:
            self.other_tests += 1
            return
        for kind in kinds:
            if kind.startswith("checker:"):
                self.checker.add(kind.removeprefix("checker:"))
            else:
                self.kinds[kind] += 1
        block_kinds = [k for k in kinds if not k.startswith("checker:")]
        if not block_kinds:
            return  # skip/clear-namespace directives and invisible setup are not counted twice
        if any(k == NOTEBOOK for k in block_kinds):
            self.notebook += 1
        elif any(k.startswith(RUN_PREFIXES) for k in block_kinds):
            self.ran += 1
        else:
            self.validated += 1

    def lines(self) -> list[str]:
        includes = sum(n for k, n in self.kinds.items() if k.startswith("include:"))
        out = [
            f"docs blocks: {self.ran} ran, {self.validated} validated "
            f"({includes} literalincluded files), {self.notebook} run by the Sphinx build (myst-nb), "
            f"{self.skipped} skipped, {self.failed} failed; {self.other_tests} harness and example-file checks passed"
        ]
        if self.kinds:
            out.append("  by kind: " + ", ".join(f"{k} {n}" for k, n in sorted(self.kinds.items())))
        if self.checker:
            out.append("  flyte-iap check: " + ", ".join(sorted(self.checker)))
        out.extend(f"  skipped {r}" for r in self.skip_reasons)
        return out
