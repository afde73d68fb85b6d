"""How the rules read GKE's and Flyte's semantics: the cases the corpus files alone do not pin."""

from __future__ import annotations

from pathlib import Path

import pytest

from flyte_iap.manifest_check import check_text

DATA = Path(__file__).parent / "data"
BASE = (DATA / "good" / "flyte-core-services-gke.yaml").read_text()
LIST_V1BETA1 = (DATA / "good" / "flyte-core-services-gke-v1beta1-list.yaml").read_text()
BINARY_NAIVE = (DATA / "rendered" / "flyte-binary-1.16-gce-naive.yaml").read_text()


def rules(text: str, **options: object) -> list[tuple[str, str]]:
    return sorted((f.rule, f.severity) for f in check_text(text, "t.yaml", **options))  # type: ignore[arg-type]


def without_document(text: str, kind: str, name: str) -> str:
    docs = text.split("\n---\n")
    kept = [d for d in docs if not (f"kind: {kind}\n" in d and f"name: {name}," in d)]
    assert len(kept) == len(docs) - 1
    return "\n---\n".join(kept)


def test_missing_reference_is_a_warning_when_the_input_has_none_of_that_kind() -> None:
    text = without_document(BASE, "FrontendConfig", "flyte-frontend")
    assert rules(text) == [("IAP033", "warning")]


def test_missing_reference_suggests_a_close_name_as_a_warning() -> None:
    text = BASE.replace("FrontendConfig: flyte-frontend", "FrontendConfig: flyte-frontnd")
    [finding] = check_text(text, "t.yaml")
    assert (finding.rule, finding.severity) == ("IAP033", "warning")
    assert "did you mean flyte-frontend?" in finding.message


def test_missing_reference_suggests_no_unrelated_name() -> None:
    text = BASE.replace("FrontendConfig: flyte-frontend", "FrontendConfig: edge-tls")
    [finding] = check_text(text, "t.yaml")
    assert "did you mean" not in finding.message
    assert "flyte-frontend" not in finding.message


def test_strict_makes_a_missing_reference_an_error() -> None:
    text = BASE.replace("FrontendConfig: flyte-frontend", "FrontendConfig: flyte-front")
    assert rules(text, strict=True) == [("IAP033", "error")]


def test_partial_reports_no_missing_reference() -> None:
    text = BASE.replace("FrontendConfig: flyte-frontend", "FrontendConfig: flyte-front")
    assert rules(text, partial=True) == []


def test_backend_config_in_another_namespace_is_not_found() -> None:
    text = BASE.replace(
        "metadata: {name: flyteadmin-iap, namespace: flyte}",
        "metadata: {name: flyteadmin-iap, namespace: ops}",
    )
    [(rule, severity)] = rules(text)
    assert (rule, severity) == ("IAP011", "warning")


def test_objects_without_namespace_resolve_against_any_namespace() -> None:
    text = BASE.replace("metadata: {name: flyte-cert, namespace: flyte}", "metadata: {name: flyte-cert}")
    assert rules(text) == []


def test_ga_backend_config_annotation_wins_over_the_beta_one() -> None:
    text = BASE.replace(
        """    cloud.google.com/backend-config: '{"default": "flyteconsole-iap"}'""",
        """    cloud.google.com/backend-config: '{"default": "flyteconsole-iap"}'
    beta.cloud.google.com/backend-config: not-json""",
    )
    assert rules(text) == []


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("flyteadmin-iap", "it is not JSON"),
        ('["flyteadmin-iap"]', "not an object"),
        ("{}", "names no BackendConfig"),
        ('{"default": 1}', '"default" must be a BackendConfig name'),
        ('{"ports": {"http": ["a"]}}', '"ports" must map'),
    ],
)
def test_unusable_backend_config_annotation_says_why(value: str, reason: str) -> None:
    text = BASE.replace("""'{"default": "flyteadmin-iap"}'""", f"'{value}'")
    findings = check_text(text, "t.yaml")
    assert [f.rule for f in findings] == ["IAP010"]
    assert reason in findings[0].message


def test_backend_config_keys_are_matched_case_insensitively_like_go_json() -> None:
    text = BASE.replace("""{"default": "flyteadmin-iap"}""", """{"Default": "flyteadmin-iap"}""")
    assert rules(text) == []


def test_old_app_protocols_annotation_takes_precedence() -> None:
    text = BASE.replace(
        """    cloud.google.com/app-protocols: '{"http": "HTTP2"}'""",
        """    cloud.google.com/app-protocols: '{"http": "HTTP2"}'
    service.alpha.kubernetes.io/app-protocols: '{"http": "HTTP"}'""",
    )
    # GKE reads the alpha key: gRPC goes over HTTP/1.1, and the conflict itself is reported
    assert rules(text) == [("IAP020", "error"), ("IAP024", "error")]


def test_app_protocols_value_must_be_a_gke_protocol() -> None:
    findings = check_text(BASE.replace('"http": "HTTP2"', '"http": "GRPC"'), "t.yaml")
    assert [f.rule for f in findings] == ["IAP020"]
    assert "GRPC is not one of HTTP, HTTPS, HTTP2" in findings[0].message


def test_catch_all_prefix_path_decides_where_grpc_goes() -> None:
    # "/" (Prefix) to the console catches every gRPC call: the longest matching path wins.
    text = BASE
    for line in [
        line for line in BASE.splitlines() if "/flyteidl.service." in line or "/grpc.health" in line
    ]:
        text = text.replace(line + "\n", "")
    text = text.replace(
        "          - {path: /console, pathType: ImplementationSpecific,",
        "          - {path: /, pathType: Prefix,"
        " backend: {service: {name: flyteconsole, port: {number: 80}}}}\n"
        "          - {path: /console, pathType: ImplementationSpecific,",
    )
    [finding] = check_text(text, "t.yaml")
    assert finding.rule == "IAP022"
    assert "Service flyteconsole (path /)" in finding.message


def test_default_backend_that_is_flyteadmin_serves_grpc() -> None:
    text = BASE
    for line in [
        line for line in BASE.splitlines() if "/flyteidl.service." in line or "/grpc.health" in line
    ]:
        text = text.replace(line + "\n", "")
    text = text.replace(
        "spec:\n  rules:\n    - host: flyte.example.com",
        "spec:\n  defaultBackend: {service: {name: flyteadmin, port: {number: 80}}}\n  rules:\n"
        "    - host: flyte.example.com",
    )
    assert rules(text) == []


@pytest.mark.parametrize(
    ("value", "redirect_needed"), [("False", False), ("0", False), ("no", True), ("true", True)]
)
def test_allow_http_is_parsed_like_go_parsebool(value: str, redirect_needed: bool) -> None:
    text = without_document(BASE, "FrontendConfig", "flyte-frontend")
    text = text.replace(
        "    networking.gke.io/v1beta1.FrontendConfig: flyte-frontend\n",
        f'    kubernetes.io/ingress.allow-http: "{value}"\n',
    )
    assert rules(text) == ([("IAP032", "warning")] if redirect_needed else [])


def test_internal_load_balancer_is_still_a_bypass_and_says_so() -> None:
    text = BASE.replace(
        "spec:\n  selector: {app.kubernetes.io/name: flyteconsole}",
        "spec:\n  type: LoadBalancer\n  selector: {app.kubernetes.io/name: flyteconsole}",
    ).replace(
        """    cloud.google.com/backend-config: '{"default": "flyteconsole-iap"}'""",
        """    cloud.google.com/backend-config: '{"default": "flyteconsole-iap"}'
    networking.gke.io/load-balancer-type: Internal""",
    )
    [finding] = check_text(text, "t.yaml")
    assert finding.rule == "IAP001"
    assert "an internal IP" in finding.message


def test_service_is_recognised_as_flyte_by_its_pods_image() -> None:
    text = """\
apiVersion: v1
kind: Service
metadata: {name: api, namespace: flyte}
spec:
  type: LoadBalancer
  selector: {app: api}
  ports: [{name: http, port: 80, targetPort: 8088}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: flyte}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api, tier: web}}
    spec:
      containers:
        - name: admin
          image: "cr.flyte.org/flyteorg/flyteadmin:v1.16.1@sha256:0123"
          ports: [{containerPort: 8088}]
"""
    [finding] = check_text(text, "t.yaml")
    assert finding.rule == "IAP001"
    assert "fronts flyteadmin" in finding.message


def test_flyte_binary_with_separate_grpc_ingress_on_gke_is_two_load_balancers() -> None:
    # separateGrpcIngress: true (the chart default) renders a second Ingress for the gRPC paths.
    http_part, grpc_part = BINARY_NAIVE.split("      - path: /flyteidl.service.AdminService\n", 1)
    grpc_ingress = (
        "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n"
        "  name: flyte-backend-flyte-binary-grpc\n  namespace: flyte\n  annotations:\n"
        "    kubernetes.io/ingress.class: gce\n    networking.gke.io/managed-certificates: flyte-cert\n"
        "spec:\n  rules:\n  - http:\n      paths:\n"
        "      - path: /flyteidl.service.AdminService\n" + grpc_part
    )
    text = http_part + '    host: "flyte.example.com"\n' + grpc_ingress
    findings = check_text(text, "t.yaml")
    assert {"IAP004", "IAP022"} <= {f.rule for f in findings}
    [missing] = [f for f in findings if f.rule == "IAP022"]
    assert missing.object == "Ingress/flyte/flyte-backend-flyte-binary-http"
    assert "Ingress/flyte/flyte-backend-flyte-binary-grpc has gRPC paths" in missing.message


def test_v1beta1_ingress_with_named_service_ports_is_understood() -> None:
    assert rules(LIST_V1BETA1) == []
    broken = LIST_V1BETA1.replace("""        cloud.google.com/app-protocols: '{"http": "HTTP2"}'\n""", "")
    assert rules(broken) == [("IAP024", "error")]


def test_wildcard_host_cannot_be_covered_by_a_managed_certificate() -> None:
    text = BASE.replace("    - host: flyte.example.com", '    - host: "*.example.com"')
    [finding] = check_text(text, "t.yaml")
    assert finding.rule == "IAP031"
    assert "wildcard" in finding.message


def test_plain_http_to_a_tls_flyteadmin_port_is_reported() -> None:
    """A second Service on flyteadmin's TLS port, used for the REST API only, left as HTTP."""
    text = (DATA / "broken" / "IAP023-grpc-to-http-gateway.yaml").read_text()
    text = text.replace("secure: false", "secure: true").replace(
        "backend: {service: {name: flyteadmin, port: {number: 80}}}}\n          - {path: /api/*",
        "backend: {service: {name: flyteadmin-rest, port: {number: 80}}}}\n          - {path: /api/*",
    )
    text += """---
apiVersion: v1
kind: Service
metadata:
  name: flyteadmin-rest
  namespace: flyte
  labels: {app.kubernetes.io/name: flyteadmin}
  annotations:
    cloud.google.com/backend-config: '{"default": "flyteadmin-iap"}'
spec:
  selector: {app.kubernetes.io/name: flyteadmin}
  ports:
    - {name: http, port: 80, targetPort: 8088}
"""
    findings = check_text(text, "t.yaml")
    assert [(f.rule, f.object) for f in findings] == [("IAP025", "Service/flyte/flyteadmin-rest")]
    assert "plain HTTP/1.1" in findings[0].message and "TLS listener" in findings[0].message


@pytest.mark.parametrize(
    ("probe", "problem"),
    [
        ("{httpGet: {path: /healthcheck, port: 8089}}", "httpGet on port 8089, which is closed"),
        (
            "{httpGet: {path: /healthcheck, port: 8088}}",
            "httpGet with scheme HTTP on port 8088, which serves TLS",
        ),
        (
            '{exec: {command: [grpc_health_probe, "-addr=:8088"]}}',
            "grpc_health_probe without -tls on port 8088",
        ),
    ],
)
def test_probe_checks_after_secure(probe: str, problem: str) -> None:
    text = (DATA / "broken" / "IAP041-exec-probes-after-secure.yaml").read_text()
    start = text.index("          readinessProbe:")
    end = text.index("          volumeMounts:")
    text = text[:start] + f"          readinessProbe: {probe}\n" + text[end:]
    [finding] = check_text(text, "t.yaml")
    assert finding.rule == "IAP041"
    assert problem in finding.message


def test_tls_aware_probes_pass_after_secure() -> None:
    text = (DATA / "broken" / "IAP041-exec-probes-after-secure.yaml").read_text()
    text = text.replace(
        '"curl -sf http://127.0.0.1:8088/healthcheck && grpc_health_probe -addr=:8089"',
        '"curl -skf https://127.0.0.1:8088/healthcheck && grpc_health_probe -tls -tls-no-verify -addr=:8088"',
    )
    assert rules(text) == []


def test_legacy_grpc_port_key_is_read() -> None:
    # Older flyte-core values use server.grpcPort instead of server.grpc.port.
    text = (DATA / "broken" / "IAP041-exec-probes-after-secure.yaml").read_text()
    text = text.replace("      grpc:\n        port: 8089\n", "      grpcPort: 9089\n")
    text = text.replace("-addr=:8089", "-addr=:9089")
    [finding] = check_text(text, "t.yaml")
    assert "port 9089, which is closed" in finding.message


def test_findings_are_ordered_by_file_and_line_and_not_repeated() -> None:
    findings = check_text(BINARY_NAIVE + "\n---\n" + BINARY_NAIVE.split("\n---\n", 1)[1], "t.yaml")
    lines = [f.line for f in findings]
    assert lines == sorted(lines)
    keys = [(f.rule, f.object, f.line, f.message) for f in findings]
    assert len(keys) == len(set(keys))


def _ingress(name: str, klass: str, host: str = "flyte.example.com") -> str:
    return f"""\
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {name}
  namespace: flyte
  annotations: {{kubernetes.io/ingress.class: {klass}}}
spec:
  rules:
    - host: {host}
      http:
        paths: [{{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}]
---
"""


def test_two_internal_ingresses_for_one_host_are_still_rivals() -> None:
    text = _ingress("a", "gce-internal") + _ingress("b", "gce-internal")
    assert ("IAP004", "error") in rules(text, partial=True)


def test_external_and_internal_ingress_for_one_host_are_not_rivals() -> None:
    text = _ingress("a", "gce") + _ingress("b", "gce-internal")
    assert "IAP004" not in {rule for rule, _ in rules(text, partial=True)}


def test_the_same_ingress_defined_twice_is_reported_once_as_defined_twice() -> None:
    text = _ingress("a", "gce") + _ingress("a", "gce")
    assert rules(text, partial=True) == [("IAP006", "warning")]


@pytest.mark.parametrize(
    ("klass", "expected"),
    [("alb", []), ("azure/application-gateway", []), ("nginx", [("IAP002", "warning")])],
)
def test_other_clouds_ingresses_are_not_reported_but_in_cluster_controllers_are(
    klass: str, expected: list[tuple[str, str]]
) -> None:
    text = _ingress("flyte", klass).replace("name: web", "name: flyteconsole")
    text = text.replace("path: /,", "path: /console,")
    assert rules(text, partial=True) == expected
