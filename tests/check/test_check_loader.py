"""Reading manifests: Helm's multi-document output, List kinds, line numbers, bad YAML, directories."""

from __future__ import annotations

from pathlib import Path

import pytest

from flyte_iap.errors import ConfigurationError
from flyte_iap.manifest_check import ManifestError, check_text, load_paths, load_text
from flyte_iap.manifest_check.loader import manifest_files

HELM_OUTPUT = """\
---
# Source: chart/templates/a.yaml
---
# Source: chart/templates/service.yaml
apiVersion: v1
kind: Service
metadata:
  name: flyteadmin
  annotations:
    cloud.google.com/backend-config: flyte-iap
spec:
  type: ClusterIP
---

---
# a values file slipped in: no kind, ignored
flyteadmin:
  enabled: true
---
- just
- a list
---
apiVersion: example.com/v1
kind: SomethingElse
metadata: {name: x}
"""


def test_helm_separators_comments_empty_and_non_object_documents_are_skipped() -> None:
    [service, other] = load_text(HELM_OUTPUT, "out.yaml")
    assert service.ref == "Service/flyteadmin"
    assert service.line == 5
    assert other.kind == "SomethingElse"


def test_field_lines_point_at_the_key() -> None:
    [service, _] = load_text(HELM_OUTPUT, "out.yaml")
    assert service.line_of("metadata", "annotations", "cloud.google.com/backend-config") == 10
    assert service.line_of("spec", "type") == 12
    # a path that does not exist falls back to its deepest existing part
    assert service.line_of("spec", "ports", 0, "name") == 11


def test_finding_reports_the_annotation_line() -> None:
    [finding] = check_text(HELM_OUTPUT, "out.yaml")
    assert (finding.rule, finding.file, finding.line) == ("IAP010", "out.yaml", 10)


def test_unknown_kinds_are_ignored_by_the_rules() -> None:
    text = "apiVersion: example.com/v1\nkind: Ingress\nmetadata: {name: x}\nspec: {ingressClassName: gce}\n"
    # an "Ingress" of another API group is not a Kubernetes Ingress
    assert check_text(text) == []


def test_list_items_become_objects_with_their_own_lines() -> None:
    text = """\
apiVersion: v1
kind: List
items:
  - apiVersion: v1
    kind: Service
    metadata: {name: a, namespace: flyte}
  - apiVersion: v1
    kind: ServiceList
    items:
      - apiVersion: v1
        kind: Service
        metadata:
          name: b
"""
    a, b = load_text(text, "list.yaml")
    assert (a.ref, a.line, a.line_of("metadata", "name")) == ("Service/flyte/a", 4, 6)
    assert (b.ref, b.line, b.line_of("metadata", "name")) == ("Service/b", 10, 13)


def test_block_scalar_lines_point_inside_the_embedded_yaml() -> None:
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n"
    text += "  server.yaml: |\n    server:\n      x: 1\n"
    [config_map] = load_text(text, "c.yaml")
    assert config_map.line_inside(("data", "server.yaml"), 2) == 8


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("apiVersion: v1\nkind: Service\nmetadata: {name: [x}\n", 3),
        ("apiVersion: v1\nkind: Service\nmetadata:\n\tname: x\n", 4),
        ("a: 1\n---\nb: [1, 2\n---\nc: 3\n", 4),
        ("key: value\n  bad: indent\n", 2),
    ],
)
def test_bad_yaml_is_one_error_with_file_and_line(text: str, line: int) -> None:
    with pytest.raises(ManifestError) as caught:
        load_text(text, "bad.yaml")
    message = caught.value.message
    assert message.startswith(f"bad.yaml:{line}: invalid YAML: ")
    assert "\n" not in message
    assert isinstance(caught.value, ConfigurationError) and caught.value.exit_code == 2


def test_bad_yaml_error_says_where_the_broken_construct_started() -> None:
    with pytest.raises(ManifestError) as caught:
        load_text("a: 1\n---\nb: [1, 2\n---\nc: 3\n", "bad.yaml")
    assert caught.value.message.endswith("(while parsing a flow sequence at line 3)")


def test_unrendered_helm_template_gets_a_hint_to_render_it() -> None:
    with pytest.raises(ManifestError) as caught:
        load_text('metadata:\n  name: {{ include "x" . }}\n', "templates/service.yaml")
    assert "helm template" in caught.value.hint


def test_file_that_is_not_utf8_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"kind: Service\n\xff\xfe")
    with pytest.raises(ManifestError, match="not UTF-8"):
        load_paths([path])


def test_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbfapiVersion: v1\nkind: Service\nmetadata: {name: a}\n")
    objects, files = load_paths([path])
    assert [o.ref for o in objects] == ["Service/a"] and files == 1


def test_missing_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no such file"):
        load_paths([tmp_path / "nope.yaml"])


def test_directory_walk_takes_yaml_skips_hidden_dirs_and_chart_templates(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("x: 1\n")
    (tmp_path / "b.yml").write_text("x: 1\n")
    (tmp_path / "notes.txt").write_text("x: 1\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.yaml").write_text("x: 1\n")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "d.yaml").write_text("x: [\n")
    chart = tmp_path / "chart"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: c\nversion: 0.1.0\n")
    (chart / "templates" / "svc.yaml").write_text("name: {{ .Release.Name }}\n")
    found = [Path(p).relative_to(tmp_path).as_posix() for p in manifest_files([tmp_path])]
    assert found == ["a.yaml", "b.yml", "chart/Chart.yaml", "sub/c.yaml"]


def test_explicit_file_is_read_whatever_its_extension(tmp_path: Path) -> None:
    path = tmp_path / "rendered.txt"
    path.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: a}\n")
    objects, _ = load_paths([path])
    assert [o.file for o in objects] == [str(path)]


def test_stdin_is_named_stdin() -> None:
    import io

    objects, files = load_paths(
        ["-"], stdin=io.StringIO("apiVersion: v1\nkind: Service\nmetadata: {name: a}\n")
    )
    assert [o.file for o in objects] == ["<stdin>"] and files == 1
