"""Every Kubernetes manifest under examples/ passes `flyte-iap check` with zero findings.

Each directory holding manifests is one deployment: examples/gke/flyte-binary and
examples/gke/flyte-core are alternatives, not parts of one cluster, so they are checked apart. They
are checked with ``partial=True`` because the Services and Deployments they point at come from the
Helm charts, which cannot be rendered here (the docs harness checks the same sets together with the
charts' Services). This repository's own good manifests go through the same assertion, so the test
means something even before any example exists.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from flyte_iap.manifest_check import check_paths, format_text, load_text

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
OWN = Path(__file__).parent / "data"


def manifest_sets() -> dict[str, list[Path]]:
    """Directory (relative to the repo) -> its YAML files that hold at least one Kubernetes object."""
    sets: dict[str, list[Path]] = {}
    for path in sorted(EXAMPLES.rglob("*")):
        if path.suffix not in (".yaml", ".yml") or any(p.startswith(".") for p in path.parts):
            continue
        if load_text(path.read_text(), str(path)):
            sets.setdefault(path.parent.relative_to(REPO).as_posix(), []).append(path)
    return sets


EXAMPLE_SETS = manifest_sets() if EXAMPLES.is_dir() else {}
OWN_GOOD = [
    *sorted((OWN / "good").glob("*.yaml")),
    OWN / "rendered" / "flyte-binary-1.16-gce.yaml",
    OWN / "rendered" / "flyte-core-1.16-gce.yaml",
]


@pytest.mark.parametrize("directory", sorted(EXAMPLE_SETS))
def test_example_deployment_has_no_finding(directory: str) -> None:
    findings = check_paths(EXAMPLE_SETS[directory], partial=True)
    assert findings == [], format_text(findings)


@pytest.mark.parametrize("path", OWN_GOOD, ids=lambda p: p.name)
def test_own_good_manifests_have_no_finding_even_when_checked_strictly(path: Path) -> None:
    findings = check_paths([path])
    assert findings == [], format_text(findings)


def test_gke_examples_are_found_when_they_exist() -> None:
    gke = EXAMPLES / "gke"
    if not gke.is_dir():
        pytest.skip("examples/gke does not exist yet")
    for chart in sorted(p.name for p in gke.iterdir() if p.is_dir()):
        assert f"examples/gke/{chart}" in EXAMPLE_SETS


def test_checking_the_whole_examples_tree_per_directory_finds_no_error_and_no_duplicate() -> None:
    findings = check_paths([EXAMPLES], per_dir=True)
    assert not [f for f in findings if f.severity == "error"], format_text(findings)
    assert not [f for f in findings if f.rule == "IAP006"], format_text(findings)


def test_checking_the_whole_examples_tree_at_once_says_defined_twice_not_rivals() -> None:
    rules = {f.rule for f in check_paths([EXAMPLES])}
    if len([p for p in (EXAMPLES / "gke").iterdir() if p.is_dir()]) > 1:
        assert "IAP006" in rules
    assert "IAP004" not in rules
