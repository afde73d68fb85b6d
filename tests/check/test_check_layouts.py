"""The layout corpus: realistic deployments, each with every finding `flyte-iap check` must report.

Each folder of ``layouts/`` holds manifests and ``expect.yaml`` (format in ``layouts/README.md``).
The folder is checked through the command line (``--format json``, the options the layout names),
and the findings must be exactly the expected ones. Each expected finding is judged ``correct`` or
``false-positive`` by a person; precision (correct / all findings) is printed by
``test_precision_over_the_corpus`` (run with ``-s``, or ``nox -s check_precision``).
"""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from flyte_iap.cli import main

LAYOUTS = Path(__file__).parent / "layouts"
FOLDERS = sorted(p for p in LAYOUTS.iterdir() if (p / "expect.yaml").is_file())
#: The precision the corpus must keep; lower it only with a layout that records a known false positive.
PRECISION_FLOOR = 0.95
_JUDGEMENTS = ("correct", "false-positive")


def expectation(folder: Path) -> dict[str, Any]:
    data = yaml.safe_load((folder / "expect.yaml").read_text())
    assert isinstance(data, dict), f"{folder.name}: expect.yaml must be a mapping"
    assert data.get("description"), f"{folder.name}: expect.yaml needs a description"
    for item in data.get("findings") or []:
        assert item.get("judged") in _JUDGEMENTS, f"{folder.name}: judged must be one of {_JUDGEMENTS}"
        assert item.get("why"), f"{folder.name}: every finding needs a why"
    return data


def run_layout(
    folder: Path,
    options: dict[str, bool],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[int, Any]:
    """``flyte-iap check --format json [options] FILES...`` on the folder's manifests."""
    # In the order a directory walk reads them (sorted path parts), as `flyte-iap check FOLDER` would.
    found = sorted(p for p in folder.rglob("*") if p.suffix in (".yaml", ".yml") and p.name != "expect.yaml")
    files = [str(p) for p in found]
    flags = [f"--{name.replace('_', '-')}" for name, on in options.items() if on]
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    code = 0
    try:
        main(["check", "--format", "json", *flags, *files])
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, _ = capsys.readouterr()
    return code, json.loads(out)


def key(item: dict[str, Any], folder: Path) -> tuple[str, str, str, str]:
    file = item["file"]
    if Path(file).is_absolute():
        file = Path(file).relative_to(folder).as_posix()
    return item["rule"], item["severity"], item["object"], file


def test_corpus_has_at_least_twenty_layouts() -> None:
    assert len(FOLDERS) >= 20


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_layout_gets_exactly_its_expected_findings(
    folder: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = expectation(folder)
    code, document = run_layout(folder, expected.get("options") or {}, capsys, monkeypatch)
    if expected.get("error"):
        assert code == 2
        assert expected["error"] in document["error"]["message"]
        return
    got = Counter(key(f, folder) for f in document["findings"])
    want = Counter(key(f, folder) for f in expected.get("findings") or [])
    assert got == want, f"unexpected: {got - want}, missing: {want - got}"
    errors = any(f["severity"] == "error" for f in document["findings"])
    assert code == (1 if errors else 0)


def precision() -> tuple[float, Counter[str], list[tuple[str, int, int]]]:
    """``(precision, findings per rule, [(layout, correct, all)])`` over the corpus's expectations."""
    per_rule: Counter[str] = Counter()
    rows = []
    correct = total = 0
    for folder in FOLDERS:
        findings = expectation(folder).get("findings") or []
        good = sum(f["judged"] == "correct" for f in findings)
        per_rule.update(f["rule"] for f in findings)
        rows.append((folder.name, good, len(findings)))
        correct += good
        total += len(findings)
    return (correct / total if total else 1.0), per_rule, rows


def test_precision_over_the_corpus(capsys: pytest.CaptureFixture[str]) -> None:
    value, per_rule, rows = precision()
    with capsys.disabled():
        print(f"\nflyte-iap check precision over {len(rows)} layouts:")
        for name, good, total in rows:
            print(f"  {name:<48} {good}/{total} judged correct")
        rules = ", ".join(f"{rule} x{count}" for rule, count in sorted(per_rule.items()))
        print(f"  findings by rule: {rules}")
        print(f"  precision: {sum(r[1] for r in rows)}/{sum(r[2] for r in rows)} = {value:.3f}")
    assert value >= PRECISION_FLOOR
