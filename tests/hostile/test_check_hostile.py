"""`flyte-iap check` on hostile input: bounded, handled answers, never a hang, a crash or a terminal escape.

Each case here failed once (issue 10): alias bombs that ran for minutes, values PyYAML cannot turn
into Python objects, deeply nested JSON, a FIFO in a directory, escape sequences in object names.
Speed and memory budgets are measured by ``benchmarks/bench_check.py``, not asserted here.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from flyte_iap.cli import main
from flyte_iap.manifest_check import ManifestError, check_text, load_text
from flyte_iap.manifest_check import loader as loader_module

# -- fixtures (kept here: tests/hostile/conftest.py belongs to the whole suite) ---------------------


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


Run = Callable[..., Result]


@pytest.fixture
def run_check(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Run:
    """``flyte-iap check ARGS`` in-process; ``stdin`` is what ``-`` reads."""

    def run(*args: str, stdin: str = "") -> Result:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        code = 0
        try:
            main(["check", *args])
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


def alias_bomb(levels: int, fan_out: int = 9, indent: str = "") -> str:
    """The classic "billion laughs": each level lists the previous one ``fan_out`` times."""
    lines = [f'{indent}l0: &l0 ["lol"]']
    for level in range(1, levels + 1):
        refs = ", ".join([f"*l{level - 1}"] * fan_out)
        lines.append(f"{indent}l{level}: &l{level} [{refs}]")
    return "\n".join(lines) + "\n"


SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: flyteadmin
  namespace: flyte
spec:
  selector: {app: flyteadmin}
  ports: [{name: http, port: 80, targetPort: 8088}]
"""


def flyteadmin_with_config(config: str) -> str:
    """A flyteadmin Deployment whose --config file (a ConfigMap value) is ``config``."""
    body = "".join(f"    {line}\n" for line in config.splitlines())
    return f"""\
apiVersion: v1
kind: ConfigMap
metadata: {{name: flyte-admin-config, namespace: flyte}}
data:
  server.yaml: |
{body}---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: flyteadmin, namespace: flyte}}
spec:
  selector: {{matchLabels: {{app: flyteadmin}}}}
  template:
    metadata: {{labels: {{app: flyteadmin}}}}
    spec:
      volumes: [{{name: config, configMap: {{name: flyte-admin-config}}}}]
      containers:
        - name: flyteadmin
          image: cr.flyte.org/flyteorg/flyteadmin:v1.16.8
          args: [flyteadmin, --config, /etc/flyte/config/*.yaml, serve]
          ports: [{{name: http, containerPort: 8088}}]
          readinessProbe: {{exec: {{command: [sh, -c, "curl http://localhost:8088/healthcheck"]}}}}
          volumeMounts: [{{name: config, mountPath: /etc/flyte/config}}]
---
{SERVICE}"""


# -- alias bombs -------------------------------------------------------------------------------------


def test_alias_bomb_of_446_bytes_is_refused_with_one_error(run_check: Run, tmp_path: Path) -> None:
    bomb = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: lol}\ndata:\n" + alias_bomb(9, indent="  ")
    assert len(bomb.encode()) < 600
    path = tmp_path / "bomb.yaml"
    path.write_text(bomb)
    result = run_check(str(path))
    assert result.code == 2
    assert "too many alias expansions" in result.stderr
    assert "hint: " in result.stderr
    assert "Traceback" not in result.stderr


def test_alias_bomb_made_of_merge_keys_is_refused() -> None:
    lines = ["apiVersion: v1", "kind: ConfigMap", "metadata: {name: m}", "a0: &a0 {k0: v}"]
    for level in range(1, 40):
        lines.append(f"a{level}: &a{level} {{<<: [*a{level - 1}, *a{level - 1}], k{level}: v}}")
    with pytest.raises(ManifestError, match="too many alias expansions"):
        load_text("\n".join(lines) + "\n", "merge.yaml")


def test_alias_bomb_inside_embedded_flyteadmin_config_is_refused(run_check: Run) -> None:
    text = flyteadmin_with_config(alias_bomb(7) + "server:\n  security: {secure: false}\n")
    result = run_check("-", stdin=text)
    assert result.code == 2
    assert "too many alias expansions" in result.stderr
    assert "ConfigMap/flyte/flyte-admin-config, key server.yaml" in result.stderr


def test_recursive_alias_is_refused() -> None:
    with pytest.raises(ManifestError, match="recursive"):
        load_text("apiVersion: v1\nkind: List\nitems: &items [*items]\n", "loop.yaml")


def test_a_few_honest_aliases_are_still_read() -> None:
    text = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: &labels {app: web, tier: front}}
spec:
  selector: {matchLabels: *labels}
  template:
    metadata: {labels: *labels}
    spec: {containers: [{name: web, image: nginx}]}
"""
    [deployment] = load_text(text, "aliases.yaml")
    assert deployment.get("spec", "template", "metadata", "labels") == {"app": "web", "tier": "front"}
    assert deployment.line_of("spec", "selector", "matchLabels") == 5


def test_deep_nesting_is_an_error_not_a_recursion_crash(run_check: Run) -> None:
    deep = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: deep}\ndata: " + "[" * 100_000 + "]" * 100_000
    result = run_check("-", stdin=deep)
    assert result.code == 2
    assert result.stderr.startswith("error: <stdin>")
    assert "unexpected" not in result.stderr


def test_deep_block_nesting_is_refused_past_the_depth_limit() -> None:
    lines = ["apiVersion: v1", "kind: ConfigMap", "metadata: {name: deep}", "data:"]
    lines += [" " * (2 * depth + 2) + f"k{depth}:" for depth in range(loader_module.MAX_DEPTH + 5)]
    with pytest.raises(ManifestError):
        load_text("\n".join(lines) + " x\n", "deep.yaml")


# -- values YAML would build but Python cannot hold --------------------------------------------------


@pytest.mark.parametrize("value", ["2020-13-45", "2021-02-30", "2021-02-28 25:61:61"])
def test_invalid_timestamp_scalars_are_kept_as_text(value: str) -> None:
    text = SERVICE.replace("  namespace: flyte\n", f"  namespace: flyte\n  labels: {{built: {value}}}\n")
    [service] = load_text(text, "ts.yaml")
    assert service.labels["built"] == value
    assert check_text(text, "ts.yaml") == []


def test_five_thousand_digit_integer_is_kept_as_text() -> None:
    digits = "9" * 5000
    text = SERVICE.replace("port: 80,", f"port: {digits},")
    [service] = load_text(text, "big.yaml")
    assert service.get("spec", "ports", 0, "port") == digits
    check_text(text, "big.yaml")  # no crash: the port just matches nothing


def test_invalid_timestamp_and_huge_integer_inside_embedded_config_do_not_crash() -> None:
    config = f"server:\n  httpPort: {'1' * 5000}\n  started: 2021-02-30\n  security: {{secure: false}}\n"
    check_text(flyteadmin_with_config(config), "embedded.yaml")


def test_python_name_tag_inside_embedded_config_is_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    config = (
        "server:\n"
        f"  httpPort: !!python/object/apply:os.system ['touch {marker}']\n"
        "  grpc: {port: !!python/name:os.system}\n"
        "  security: {secure: false}\n"
    )
    check_text(flyteadmin_with_config(config), "tagged.yaml")
    assert not marker.exists()


def test_python_name_tag_in_a_manifest_is_an_input_error(run_check: Run) -> None:
    result = run_check("-", stdin=SERVICE.replace("name: flyteadmin", "name: !!python/name:os.system"))
    assert result.code == 2
    assert "invalid YAML" in result.stderr


@pytest.mark.parametrize("key", ["cloud.google.com/backend-config", "cloud.google.com/app-protocols"])
def test_deeply_nested_json_annotation_is_a_finding_not_a_crash(key: str) -> None:
    nested = "[" * 200_000 + "]" * 200_000
    annotation = f"  namespace: flyte\n  annotations:\n    {key}: '{nested}'\n"
    text = SERVICE.replace("  namespace: flyte\n", annotation)
    findings = check_text(text, "json.yaml")
    assert [f.rule for f in findings] in (["IAP010"], ["IAP020"])
    assert all(len(f.message) < 1000 for f in findings)


# -- what is read --------------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_named_yaml_in_a_directory_is_skipped_not_read(tmp_path: Path) -> None:
    (tmp_path / "service.yaml").write_text(SERVICE)
    os.mkfifo(tmp_path / "trap.yaml")
    env = {**os.environ, "FLYTE_IAP_NO_FAST_PATH": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "flyte_iap", "check", "--format", "json", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "trap.yaml: not a regular file" in done.stderr
    assert json.loads(done.stdout)["summary"]["files"] == 1


def test_file_larger_than_the_cap_is_refused(
    run_check: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loader_module, "MAX_FILE_BYTES", 1024)
    big = tmp_path / "big.yaml"
    big.write_text(SERVICE + "#" * 2048 + "\n")
    result = run_check(str(big))
    assert result.code == 2
    assert "larger than" in result.stderr


def test_inputs_larger_together_than_the_total_cap_are_refused(
    run_check: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loader_module, "MAX_TOTAL_BYTES", 3 * len(SERVICE))
    for n in range(5):
        (tmp_path / f"s{n}.yaml").write_text(SERVICE.replace("flyteadmin", f"svc{n}"))
    result = run_check(str(tmp_path))
    assert result.code == 2
    assert "the inputs together are larger than" in result.stderr


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_dev_zero_named_explicitly_is_read_only_up_to_the_cap(
    run_check: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loader_module, "MAX_FILE_BYTES", 1024 * 1024)
    result = run_check("/dev/zero")
    assert result.code == 2
    assert "/dev/zero: larger than 1 MiB" in result.stderr


def test_standard_input_larger_than_the_cap_is_refused(
    run_check: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loader_module, "MAX_FILE_BYTES", 1024)
    result = run_check("-", stdin=SERVICE + "#" * 4096)
    assert result.code == 2
    assert "<stdin>: larger than" in result.stderr


# -- what is printed -----------------------------------------------------------------------------------


def test_escape_sequences_in_object_names_are_printed_escaped(run_check: Run) -> None:
    hostile = SERVICE.replace("name: flyteadmin", 'name: "flyteadmin\\e]0;owned\\a\\e[2J"').replace(
        "spec:\n", "spec:\n  type: LoadBalancer\n"
    )
    result = run_check("-", stdin=hostile)
    assert result.code == 1
    assert "\x1b" not in result.stdout + result.stderr
    assert "\x07" not in result.stdout + result.stderr
    assert "\\x1b]0;owned\\x07\\x1b[2J" in result.stdout


def test_escape_sequences_in_a_file_name_are_printed_escaped(run_check: Run, tmp_path: Path) -> None:
    directory = tmp_path / "in"
    directory.mkdir()
    (directory / "x\x1b[31m.yaml").write_text("kind: Service\napiVersion: v1\nmetadata: {name: [\n")
    result = run_check(str(directory))
    assert result.code == 2
    assert "\x1b" not in result.stderr
    assert "\\x1b[31m.yaml" in result.stderr


def test_json_output_never_carries_raw_control_characters(run_check: Run) -> None:
    hostile = SERVICE.replace("name: flyteadmin", 'name: "flyteadmin\\e[2J"').replace(
        "spec:\n", "spec:\n  type: LoadBalancer\n"
    )
    result = run_check("--format", "json", "-", stdin=hostile)
    assert "\x1b" not in result.stdout
    assert json.loads(result.stdout)["findings"][0]["object"] == "Service/flyte/flyteadmin\x1b[2J"
