"""`flyte-iap check`: input from files, directories and stdin, text and JSON output, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from flyte_iap.manifest_check import RULES

DATA = Path(__file__).parent / "data"
GOOD = DATA / "good" / "flyte-core-services-gke.yaml"
ERROR_FILE = DATA / "broken" / "IAP013-console-without-backend-config.yaml"
WARNING_FILE = DATA / "broken" / "IAP032-http-without-redirect.yaml"
NAIVE = DATA / "rendered" / "flyte-binary-1.16-gce-naive.yaml"

Run = Callable[..., object]


def test_clean_input_exits_0_with_summary_on_stderr_and_nothing_on_stdout(run_check: Run) -> None:
    result = run_check(str(GOOD))
    assert result.code == 0
    assert result.stdout == ""
    assert result.stderr.strip() == "no problems found (1 file, 8 objects checked)"


def test_error_finding_exits_1_and_prints_the_block(run_check: Run) -> None:
    result = run_check(str(ERROR_FILE))
    assert result.code == 1
    first = result.stdout.splitlines()[0]
    assert first.startswith(f"{ERROR_FILE}:") and first.endswith(": IAP013 error: Service/flyte/flyteconsole")
    assert "\n  fix: " in result.stdout
    assert f"  see: {RULES['IAP013'].url}" in result.stdout
    assert result.stderr.strip() == "1 error, 0 warnings (1 file, 8 objects checked)"


def test_warnings_alone_exit_0(run_check: Run) -> None:
    result = run_check(str(WARNING_FILE))
    assert result.code == 0
    assert ": IAP032 warning: " in result.stdout
    assert "0 errors, 1 warning" in result.stderr


def test_stdin_is_read_for_dash_and_named_stdin(run_check: Run) -> None:
    result = run_check("-", stdin=ERROR_FILE.read_text())
    assert result.code == 1
    assert result.stdout.startswith("<stdin>:")


def test_stdin_and_files_are_checked_together(run_check: Run, tmp_path: Path) -> None:
    # The Ingress comes on stdin, the BackendConfigs etc. from a file: references resolve across them.
    text = GOOD.read_text()
    ingress_at = text.index("apiVersion: networking.k8s.io/v1\nkind: Ingress")
    (tmp_path / "rest.yaml").write_text(text[:ingress_at])
    result = run_check("-", str(tmp_path / "rest.yaml"), stdin=text[ingress_at:])
    assert (result.code, result.stdout) == (0, "")
    assert "(2 files, 8 objects checked)" in result.stderr


def test_json_output_is_a_machine_readable_report(run_check: Run) -> None:
    result = run_check("--format", "json", str(NAIVE))
    assert result.code == 1
    assert result.stderr == ""
    report = json.loads(result.stdout)
    assert report["tool"] == "flyte-iap"
    assert report["summary"] == {"errors": 3, "warnings": 2, "files": 1, "objects": 10}
    first = report["findings"][0]
    assert set(first) == {"rule", "severity", "object", "file", "line", "message", "fix", "url"}
    assert first["file"] == str(NAIVE) and isinstance(first["line"], int)


def test_json_output_for_clean_input_has_no_findings(run_check: Run) -> None:
    result = run_check("--format", "json", str(GOOD))
    assert result.code == 0
    assert json.loads(result.stdout)["findings"] == []


def test_directory_is_walked_and_all_files_are_one_deployment(run_check: Run, tmp_path: Path) -> None:
    for n, document in enumerate(GOOD.read_text().split("\n---\n")):
        sub = tmp_path / ("ingress" if "kind: Ingress" in document else "objects")
        sub.mkdir(exist_ok=True)
        (sub / f"{n}.yaml").write_text(document)
    (tmp_path / "README.md").write_text("not yaml: [")
    result = run_check(str(tmp_path))
    assert (result.code, result.stdout) == (0, "")
    assert "(8 files, 8 objects checked)" in result.stderr


def test_bad_yaml_exits_2_with_one_line_error_and_no_traceback(run_check: Run) -> None:
    result = run_check("-", stdin="apiVersion: v1\nkind: Service\nmetadata: {name: [x}\n")
    assert result.code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0].startswith("error: <stdin>:3: invalid YAML: ")
    assert lines[1].startswith("hint: ")
    assert "Traceback" not in result.stderr


def test_missing_file_exits_2(run_check: Run, tmp_path: Path) -> None:
    result = run_check(str(tmp_path / "missing.yaml"))
    assert result.code == 2
    assert "no such file or directory" in result.stderr


def test_no_paths_is_a_usage_error(run_check: Run) -> None:
    result = run_check()
    assert result.code == 2
    assert "give manifest files" in result.stderr


def test_partial_skips_references_outside_the_input(run_check: Run) -> None:
    assert "IAP030" in run_check(str(NAIVE)).stdout
    result = run_check("--partial", str(NAIVE))
    assert "IAP030" not in result.stdout
    assert result.code == 1  # the real errors stay


def test_ignore_skips_rules_given_repeated_or_comma_separated(run_check: Run) -> None:
    result = run_check("--ignore", "IAP013,iap024", "--ignore", "IAP040", str(NAIVE))
    assert result.code == 0
    assert "IAP013" not in result.stdout and "IAP040" not in result.stdout
    assert "0 errors, 2 warnings" in result.stderr


def test_ignore_can_come_from_the_environment(run_check: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLYTE_IAP_IGNORE", "IAP013")
    assert run_check(str(ERROR_FILE)).code == 0


def test_unknown_rule_in_ignore_exits_2(run_check: Run) -> None:
    result = run_check("--ignore", "IAP999", str(GOOD))
    assert result.code == 2
    assert "unknown rule ID IAP999" in result.stderr


def test_ignore_annotation_on_the_object_silences_that_rule_there(run_check: Run) -> None:
    text = ERROR_FILE.read_text().replace(
        "  labels: {app.kubernetes.io/name: flyteconsole}\n",
        "  labels: {app.kubernetes.io/name: flyteconsole}\n"
        "  annotations: {flyte-iap/ignore: 'IAP002, IAP013'}\n",
    )
    result = run_check("-", stdin=text)
    assert (result.code, result.stdout) == (0, "")


def test_list_rules_prints_every_rule(run_check: Run) -> None:
    result = run_check("--list-rules")
    assert result.code == 0
    assert [line.split()[0] for line in result.stdout.splitlines()] == sorted(RULES)


def test_input_without_kubernetes_objects_is_exit_2_not_a_clean_bill(run_check: Run) -> None:
    result = run_check("-", stdin="flyteadmin:\n  enabled: true\n")
    assert result.code == 2
    assert "error: no Kubernetes objects" in result.stderr
    assert "no problems found" not in result.stdout + result.stderr


def test_directory_without_manifest_files_is_exit_2(run_check: Run, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("kind: Service\n")
    result = run_check(str(tmp_path))
    assert result.code == 2
    assert "error: no manifest files (*.yaml, *.yml) in" in result.stderr


def test_json_format_prints_an_error_document_on_exit_2(run_check: Run, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Service\napiVersion: v1\nmetadata: {name: [\n")
    result = run_check("--format", "json", str(bad))
    assert result.code == 2
    document = json.loads(result.stdout)
    assert document["findings"] == []
    assert "invalid YAML" in document["error"]["message"]
    assert document["error"]["hint"]
    assert "error: " in result.stderr


def test_json_format_error_document_for_an_unknown_rule(run_check: Run) -> None:
    result = run_check("--format", "json", "--ignore", "IAP999", str(ERROR_FILE))
    assert result.code == 2
    assert "IAP999" in json.loads(result.stdout)["error"]["message"]


def test_per_dir_checks_alternative_folders_apart(run_check: Run, tmp_path: Path) -> None:
    for variant in ("a", "b"):
        folder = tmp_path / variant
        folder.mkdir()
        (folder / "cert.yaml").write_text(
            "apiVersion: networking.gke.io/v1\nkind: ManagedCertificate\n"
            "metadata: {name: flyte, namespace: flyte}\nspec: {domains: [flyte.example.com]}\n"
        )
    together = run_check("--format", "json", str(tmp_path))
    assert [f["rule"] for f in json.loads(together.stdout)["findings"]] == ["IAP006"]
    apart = run_check("--format", "json", "--per-dir", str(tmp_path))
    assert json.loads(apart.stdout)["findings"] == []


def test_console_script_reads_a_pipe_and_sets_the_exit_status() -> None:
    env = {**os.environ, "FLYTE_IAP_NO_FAST_PATH": "1"}
    command = [sys.executable, "-m", "flyte_iap", "check", "-"]
    done = subprocess.run(
        command, input=ERROR_FILE.read_text(), capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 1, done.stderr
    assert "IAP013 error" in done.stdout
    done = subprocess.run(command, input="a: b\nc: [\n", capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("error: <stdin>:3: invalid YAML: ")
    assert "Traceback" not in done.stderr
