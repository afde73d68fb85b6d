"""The corpus of broken manifests: each file triggers exactly its rule, and nothing else.

A file's first line says which rule it is for (``# expect: IAP013``), and its name starts with
that ID. Where fixing that mistake would not remove others the file holds (the checker reports every
independent finding in one run), a second line lists them (``# also: IAP022, IAP034``). The good
manifests in ``data/good`` produce no finding at all.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flyte_iap.manifest_check import RULES, check_paths
from flyte_iap.manifest_check.loader import load_paths

DATA = Path(__file__).parent / "data"

BROKEN = sorted((DATA / "broken").glob("*.yaml"))
GOOD = sorted((DATA / "good").glob("*.yaml"))


def expected_rule(path: Path) -> str:
    match = re.match(r"# expect: (IAP\d{3})\n", path.read_text())
    assert match, f"{path.name} must start with '# expect: IAPnnn'"
    return match.group(1)


def also_expected(path: Path) -> set[str]:
    match = re.match(r"# expect: IAP\d{3}\n# also: (IAP\d{3}(?:, IAP\d{3})*)\n", path.read_text())
    return set(match.group(1).split(", ")) if match else set()


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.stem)
def test_broken_manifest_triggers_exactly_its_rule(path: Path) -> None:
    rule = expected_rule(path)
    assert path.name.startswith(rule + "-")
    findings = check_paths([path])
    assert {f.rule for f in findings} == {rule} | also_expected(path)
    assert all(f.severity == RULES[rule].severity for f in findings if f.rule == rule)


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.stem)
def test_finding_points_inside_the_object_it_names(path: Path) -> None:
    objects, _ = load_paths([path])
    starts = sorted(o.line for o in objects)
    for finding in check_paths([path]):
        # An object defined twice (IAP006) has two candidates; the finding must be inside one.
        spans = []
        for obj in (o for o in objects if o.ref == finding.object):
            following = [line for line in starts if line > obj.line]
            spans.append((obj.line, following[0] if following else 10**9))
        assert any(start <= finding.line < end for start, end in spans), finding
        assert finding.file == str(path)
        assert finding.url == RULES[finding.rule].url


def test_every_rule_has_a_broken_manifest() -> None:
    assert {expected_rule(p) for p in BROKEN} == set(RULES)


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.stem)
def test_good_manifest_has_no_finding(path: Path) -> None:
    assert check_paths([path]) == []
