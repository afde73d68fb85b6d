"""The GKE Gateway API rules (IAP060-IAP069): the semantics the layouts alone do not pin.

The realistic Gateway layouts, with their exact expected findings, are ``layouts/gateway-*`` (checked by
``test_check_layouts.py``). The guide's own example manifests (``examples/gke/gateway/``) checked together
with the Services the Flyte 2 flyte-binary chart renders must report nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from flyte_iap.manifest_check import check_paths, check_text, format_text
from flyte_iap.manifest_check.gateway import hostname_matches

DATA = Path(__file__).parent / "data"
LAYOUTS = Path(__file__).parent / "layouts"
CHART_SERVICES = DATA / "gateway" / "flyte2-binary-services.yaml"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "gke" / "gateway"
GOOD = (DATA / "good" / "gateway-flyte2.yaml").read_text()


def test_the_layout_corpus_has_gateway_layouts_with_and_without_findings() -> None:
    import yaml

    folders = sorted(LAYOUTS.glob("gateway-*/expect.yaml"))
    counts = [len(yaml.safe_load(f.read_text()).get("findings") or []) for f in folders]
    assert len(folders) >= 8
    assert 0 in counts and any(counts)


def test_guide_examples_with_the_charts_services_report_nothing() -> None:
    files = sorted(EXAMPLES.glob("*.yaml"))
    assert {f.name for f in files} >= {"gateway.yaml", "httproute.yaml", "backend-policies.yaml"}
    findings = check_paths([*files, CHART_SERVICES])
    assert findings == [], format_text(findings)


def test_guide_examples_without_the_chart_name_the_missing_services_as_warnings() -> None:
    findings = check_paths(sorted(EXAMPLES.glob("*.yaml")))
    assert {(f.rule, f.severity) for f in findings} == {("IAP063", "warning")}
    assert check_paths(sorted(EXAMPLES.glob("*.yaml")), partial=True) == []


def rules(text: str, **options: object) -> list[tuple[str, str]]:
    return sorted((f.rule, f.severity) for f in check_text(text, "t.yaml", **options))  # type: ignore[arg-type]


def without(text: str, kind: str, name: str) -> str:
    docs = text.split("\n---\n")
    kept = [d for d in docs if not (f"kind: {kind}\n" in d and f"metadata: {{name: {name}," in d)]
    assert len(kept) == len(docs) - 1
    return "\n---\n".join(kept)


def test_route_without_policy_is_not_reported_with_partial() -> None:
    text = without(GOOD, "GCPBackendPolicy", "flyte-binary-http")
    assert rules(text) == [("IAP060", "error")]
    assert rules(text, partial=True) == []


def test_policy_that_leaves_iap_off_is_reported_even_with_partial() -> None:
    text = GOOD.replace("iap: {enabled: true,", "iap: {enabled: false,", 1)
    assert rules(text, partial=True) == [("IAP060", "error")]


def test_iap_without_client_and_secret_names_both() -> None:
    text = GOOD.replace(
        "iap: {enabled: true, clientID: 123456789012-iap.apps.googleusercontent.com, oauth2ClientSecret: "
        "{name: flyte-iap-oauth}}",
        "iap: {enabled: true}",
        1,
    )
    [finding] = check_text(text, "t.yaml")
    assert finding.rule == "IAP061"
    assert "clientID and oauth2ClientSecret.name are not set" in finding.message


def test_gateways_of_other_controllers_are_not_judged() -> None:
    text = GOOD.replace("gke-l7-global-external-managed", "istio").replace(
        "  annotations: {networking.gke.io/certmap: flyte-cert-map}\n", ""
    )
    text = without(
        without(text, "GCPBackendPolicy", "flyte-binary-http"), "GCPBackendPolicy", "flyte-binary-console"
    )
    text = without(
        without(text, "HealthCheckPolicy", "flyte-binary-http"), "HealthCheckPolicy", "flyte-binary-console"
    )
    assert rules(text) == []


@pytest.mark.parametrize(
    "gateway_class",
    ["gke-l7-regional-external-managed", "gke-l7-rilb", "gke-l7-gxlb", "gke-l7-global-external-managed-mc"],
)
def test_every_gke_gateway_class_is_judged(gateway_class: str) -> None:
    text = without(GOOD, "GCPBackendPolicy", "flyte-binary-console")
    text = text.replace("gke-l7-global-external-managed", gateway_class)
    assert rules(text) == [("IAP060", "error")]


def test_policy_target_of_the_wrong_kind_is_an_error() -> None:
    text = GOOD + (
        "\n---\napiVersion: networking.gke.io/v1\nkind: GCPGatewayPolicy\n"
        "metadata: {name: ssl, namespace: flyte}\n"
        'spec:\n  targetRef: {group: "", kind: Service, name: flyte-backend-flyte-binary-http}\n'
        "  default: {sslPolicy: modern}\n"
    )
    [finding] = check_text(text, "t.yaml")
    assert (finding.rule, finding.severity) == ("IAP063", "error")
    assert "applies to a Gateway" in finding.message


def test_gateway_policy_for_the_gateway_is_fine_and_for_a_missing_one_is_reported() -> None:
    policy = (
        "\n---\napiVersion: networking.gke.io/v1\nkind: GCPGatewayPolicy\n"
        "metadata: {name: ssl, namespace: flyte}\n"
        "spec:\n  targetRef: {group: gateway.networking.k8s.io, kind: Gateway, name: NAME}\n"
        "  default: {sslPolicy: modern}\n"
    )
    assert rules(GOOD + policy.replace("NAME", "flyte")) == []
    # How bad a missing object is (warning, error when likely misspelt or asked) is the registry's call.
    assert [r for r, _ in rules(GOOD + policy.replace("NAME", "flyte-gw"))] == ["IAP063"]
    assert rules(GOOD + policy.replace("NAME", "flyte-gw"), partial=True) == []


def test_multi_cluster_service_import_targets_are_not_called_the_wrong_kind() -> None:
    text = GOOD + (
        "\n---\napiVersion: networking.gke.io/v1\nkind: GCPBackendPolicy\n"
        "metadata: {name: mcs, namespace: flyte}\n"
        "spec:\n  targetRef: {group: net.gke.io, kind: ServiceImport, name: flyte}\n"
    )
    assert rules(text) == []


def test_redirect_route_on_the_http_listener_keeps_plain_http_quiet_but_forwarding_does_not() -> None:
    forwarding = GOOD.replace(
        "parentRefs: [{name: flyte, sectionName: https}]", "parentRefs: [{name: flyte}]"
    )
    assert rules(forwarding) == [("IAP065", "warning")]
    http_only_section = GOOD.replace(
        "parentRefs: [{name: flyte, sectionName: https}]", "parentRefs: [{name: flyte, sectionName: http}]"
    )
    assert rules(http_only_section) == [("IAP065", "warning")]


def test_pre_shared_certificate_and_secret_are_certificates() -> None:
    base = GOOD.replace("  annotations: {networking.gke.io/certmap: flyte-cert-map}\n", "")
    assert rules(base) == [("IAP066", "error")]
    pre_shared = base.replace(
        "{name: https, protocol: HTTPS, port: 443, hostname: flyte.example.com}",
        "{name: https, protocol: HTTPS, port: 443, hostname: flyte.example.com, "
        "tls: {mode: Terminate, options: {networking.gke.io/pre-shared-certs: flyte-cert}}}",
    )
    assert rules(pre_shared) == []
    secret = base.replace(
        "{name: https, protocol: HTTPS, port: 443, hostname: flyte.example.com}",
        "{name: https, protocol: HTTPS, port: 443, hostname: flyte.example.com, "
        "tls: {certificateRefs: [{name: flyte-tls}]}}",
    )
    assert rules(secret) == []


def test_backend_config_on_a_service_an_ingress_also_reaches_is_not_called_ignored() -> None:
    layout = (LAYOUTS / "gateway-migrated-from-ingress" / "manifests.yaml").read_text()
    ingress = (
        "\n---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: old\n  namespace: flyte\n"
        "  annotations: {kubernetes.io/ingress.class: gce}\nspec:\n  defaultBackend:\n"
        "    service: {name: flyte-backend-flyte-binary-http, port: {number: 8090}}\n"
    )
    assert "IAP062" not in {r for r, _ in rules(layout + ingress)}
    assert "IAP062" in {r for r, _ in rules(layout)}


def test_service_selecting_a_subset_of_the_labels_counts_as_the_same_pods() -> None:
    text = GOOD + (
        "\n---\napiVersion: v1\nkind: Service\nmetadata: {name: debug, namespace: flyte}\nspec:\n"
        "  type: LoadBalancer\n  selector: {app.kubernetes.io/instance: flyte-backend}\n"
        "  ports: [{port: 80}]\n"
    )
    assert rules(text) == [("IAP067", "error")]
    other_app = text.replace("{app.kubernetes.io/instance: flyte-backend}", "{app: grafana}")
    assert rules(other_app) == []


def test_grpc_port_that_declares_an_app_protocol_is_not_judged() -> None:
    text = (DATA / "broken" / "IAP069-gateway-flyte1-grpc.yaml").read_text()
    assert rules(text) == [("IAP069", "error")]
    declared = text.replace(
        "{name: grpc, port: 81, targetPort: 8089}",
        "{name: grpc, port: 81, targetPort: 8089, appProtocol: kubernetes.io/h2c}",
    )
    assert rules(declared) == []


@pytest.mark.parametrize(
    ("listener", "host", "matches"),
    [
        (None, "flyte.example.com", True),
        ("flyte.example.com", "flyte.example.com", True),
        ("*.example.com", "flyte.example.com", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", "a.b.example.com", True),
        ("flyte.example.com", "*.example.com", True),
        ("flyte.example.com", "flyte.example.org", False),
    ],
)
def test_listener_hostnames_match_like_the_gateway_api(
    listener: str | None, host: str, matches: bool
) -> None:
    assert hostname_matches(listener, host) is matches


@pytest.mark.parametrize(
    "garbage",
    [
        "spec: {gatewayClassName: gke-l7-rilb, listeners: 7}",
        "spec: {gatewayClassName: [x], listeners: [1, {protocol: [HTTPS]}, {tls: 3}]}",
        "spec: null",
    ],
)
def test_malformed_gateway_api_objects_do_not_crash(garbage: str) -> None:
    text = (
        f"apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: g}}\n{garbage}\n---\n"
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\n"
        "spec: {parentRefs: [{name: g}, 5, {kind: [1]}, {name: g, namespace: {a: b}, port: [1]}],\n"
        "       rules: [{backendRefs: [{name: x, port: {}}]}, 3]}\n---\n"
        "apiVersion: networking.gke.io/v1\nkind: GCPBackendPolicy\nmetadata: {name: p}\n"
        "spec: {targetRef: [], default: {iap: 5}}\n---\n"
        "apiVersion: networking.gke.io/v1\nkind: HealthCheckPolicy\nmetadata: {name: h}\n"
        "spec: {targetRef: {name: {a: b}, namespace: [x]}}\n"
    )
    check_text(text, "t.yaml")
    check_text(text, "t.yaml", partial=True)


def test_policy_for_a_service_in_another_namespace_is_an_error() -> None:
    text = GOOD.replace(
        'targetRef: {group: "", kind: Service, name: flyte-backend-flyte-binary-http}',
        'targetRef: {group: "", kind: Service, name: flyte-backend-flyte-binary-http, namespace: other}',
        1,
    )
    found = check_text(text, "t.yaml")
    assert ("IAP063", "error") in {(f.rule, f.severity) for f in found}
    assert any("own namespace" in f.message for f in found)


def test_parent_ref_port_attaches_the_route_to_the_listeners_on_that_port_only() -> None:
    https_by_port = GOOD.replace(
        "parentRefs: [{name: flyte, sectionName: https}]", "parentRefs: [{name: flyte, port: 443}]"
    )
    assert rules(https_by_port) == []
    http_by_port = GOOD.replace(
        "parentRefs: [{name: flyte, sectionName: https}]", "parentRefs: [{name: flyte, port: 80}]"
    )
    assert rules(http_by_port) == [("IAP065", "warning")]


def test_unused_managed_certificate_is_not_reported_with_partial() -> None:
    path = LAYOUTS / "gateway-managed-certificate-on-gateway" / "manifests.yaml"
    assert {(f.rule, f.severity) for f in check_paths([path], partial=True)} == {("IAP066", "error")}


def test_certificate_refs_that_are_not_a_list_count_as_no_certificate() -> None:
    text = GOOD.replace("  annotations: {networking.gke.io/certmap: flyte-cert-map}\n", "").replace(
        "{name: https, protocol: HTTPS, port: 443, hostname: flyte.example.com}",
        "{name: https, protocol: HTTPS, port: 443, hostname: flyte.example.com, tls: {certificateRefs: 5}}",
    )
    [finding] = check_text(text, "t.yaml")
    assert finding.rule == "IAP066"
    assert "has no certificate" in finding.message


def _without_ingress_objects(path: Path) -> str:
    """A chart rendering with its Ingress and the objects only an Ingress reads removed."""
    import yaml

    ingress_only = ("Ingress", "BackendConfig", "FrontendConfig", "ManagedCertificate")
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") not in ingress_only]
    for doc in docs:
        annotations = (doc.get("metadata") or {}).get("annotations") or {}
        for key in ("cloud.google.com/backend-config", "cloud.google.com/app-protocols"):
            annotations.pop(key, None)
    return yaml.safe_dump_all(docs, sort_keys=False)


def test_flyte_core_rendering_behind_a_gateway_reports_only_the_grpc_hop() -> None:
    rendering = _without_ingress_objects(DATA / "rendered" / "flyte-core-1.16-gce.yaml")
    overlay = (DATA / "gateway" / "overlays" / "flyte-core-gateway.yaml").read_text()
    findings = check_text(rendering + "\n---\n" + overlay, "t.yaml")
    assert {(f.rule, f.severity, f.object) for f in findings} == {
        ("IAP069", "error", "HTTPRoute/flyte/flyte")
    }
    assert check_text(rendering, "t.yaml") == []


def test_generic_api_and_console_paths_do_not_make_a_service_flyte() -> None:
    text = GOOD + (
        "\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n"
        "metadata: {name: shop, namespace: flyte}\n"
        "spec:\n  parentRefs: [{name: flyte, sectionName: https}]\n  rules:\n"
        "    - matches:\n"
        "        - {path: {type: PathPrefix, value: /api}}\n"
        "        - {path: {type: PathPrefix, value: /console}}\n"
        "      backendRefs: [{name: shop, port: 80}]\n"
        "\n---\napiVersion: v1\nkind: Service\nmetadata: {name: shop, namespace: flyte}\n"
        "spec:\n  selector: {app: shop}\n  ports: [{port: 80}]\n"
    )
    assert rules(text) == []
    flyte_api = text.replace("value: /api}", "value: /flyteidl2.workflow.RunService}")
    assert rules(flyte_api) == [("IAP060", "error"), ("IAP068", "warning")]
