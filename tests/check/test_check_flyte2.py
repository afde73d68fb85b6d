"""Flyte 2 (chart flyte-binary v2) behind a GCE Ingress: one plain-HTTP API port (8090) whose clients
speak Connect, so the Flyte 1 gRPC rules (IAP022-IAP024: gRPC paths, HTTP2 backends) do not apply,
while the exposure and IAP rules still do."""

from __future__ import annotations

from pathlib import Path

from flyte_iap.manifest_check import check_text

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "gke" / "flyte2"


def _service(name: str, port: int, *, kind: str = "ClusterIP", chart: str = "flyte-binary-v2.0.43") -> str:
    return f"""
apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: flyte
  labels: {{helm.sh/chart: {chart}, app.kubernetes.io/name: flyte-binary}}
  annotations:
    cloud.google.com/backend-config: '{{"ports": {{"8090": "flyte-api", "80": "flyte-console"}}}}'
spec:
  type: {kind}
  ports:
    - {{name: http, port: {port}, targetPort: http}}
"""


def _deployment(api: str) -> str:
    manifests = [p.read_text() for p in sorted(EXAMPLES.glob("*.yaml"))]
    return "\n---\n".join([*manifests, api, _service("flyte-flyte-binary-console", 80)])


def rules(text: str) -> list[tuple[str, str]]:
    return sorted((f.rule, f.severity) for f in check_text(text, "t.yaml"))


def test_the_guides_flyte2_deployment_has_no_findings() -> None:
    assert rules(_deployment(_service("flyte-flyte-binary-http", 8090))) == []


def test_flyte2_is_recognised_by_port_8090_without_the_chart_label() -> None:
    assert rules(_deployment(_service("flyte-flyte-binary-http", 8090, chart="other"))) == []


def test_the_same_ingress_in_front_of_flyte1s_http_port_still_needs_grpc_over_http2() -> None:
    found = rules(_deployment(_service("flyte-flyte-binary-http", 8088, chart="flyte-binary-v0.1.10")))
    assert ("IAP024", "error") in found or ("IAP023", "error") in found


def test_a_flyte2_api_service_of_type_load_balancer_is_still_exposure_beside_iap() -> None:
    found = rules(_deployment(_service("flyte-flyte-binary-http", 8090, kind="LoadBalancer")))
    assert ("IAP001", "error") in found


def test_a_shared_backend_config_map_with_a_key_no_service_has_is_still_reported() -> None:
    text = _deployment(_service("flyte-flyte-binary-http", 8090)).replace(
        '"80": "flyte-console"', '"81": "flyte-console"'
    )
    found = rules(text)
    assert ("IAP012", "error") in found and ("IAP013", "error") in found
