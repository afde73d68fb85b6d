"""The checker on Helm renderings of the flyte-binary and flyte-core charts (v1.16).

The files in ``data/rendered`` are NOT real ``helm template`` output: there is no helm binary and no
network here. They were written by hand from the charts' templates (flyteorg/flyte, branch
``master``, ``charts/flyte-binary`` and ``charts/flyte-core``) for the values in each file's header:
the same objects, names, labels, ports, paths, probes and configuration files the templates produce.
The naive renderings must give exactly the findings below; the correct ones none at all, and
breaking one setting at a time must bring back the rule that guards it (so "no finding" means the
checker understood the rendering, not that it skipped it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from flyte_iap.manifest_check import check_paths, check_text

RENDERED = Path(__file__).parent / "data" / "rendered"

E, W = "error", "warning"

EXPECTED = {
    # ingress.create with GCE annotations, separateGrpcIngress: false, nothing else changed.
    "flyte-binary-1.16-gce-naive.yaml": [
        ("IAP013", E, "Service/flyte/flyte-backend-flyte-binary-http"),  # no BackendConfig: IAP off
        ("IAP024", E, "Service/flyte/flyte-backend-flyte-binary-http"),  # gRPC over HTTP/1.1 to 8089
        ("IAP030", W, "Ingress/flyte/flyte-backend-flyte-binary-http"),  # certificate not in the input
        ("IAP032", W, "Ingress/flyte/flyte-backend-flyte-binary-http"),  # HTTP open, no redirect
        ("IAP040", E, "Service/flyte/flyte-backend-flyte-binary-http"),  # no health check for 8089
    ],
    # flyte-core defaults (built for nginx) on GKE, where the GCE controller takes a class-less Ingress.
    "flyte-core-1.16-defaults.yaml": [
        ("IAP013", E, "Service/flyte/flyteadmin"),
        ("IAP013", E, "Service/flyte/flyteconsole"),
        ("IAP024", E, "Service/flyte/flyteadmin"),
        ("IAP034", E, "Ingress/flyte/flyte-core"),  # no certificate at all
        ("IAP040", E, "Service/flyte/flyteadmin"),  # exec probes (flyteorg/flyte#3730)
        ("IAP040", E, "Service/flyte/flyteconsole"),  # no probe
    ],
    # values-gcp.yaml's app-protocols {"grpc": "HTTP2"} with IAP on, but flyteadmin still plaintext.
    "flyte-core-1.16-gce-values-gcp-style.yaml": [
        ("IAP025", E, "Service/flyte/flyteadmin"),
        ("IAP032", W, "Ingress/flyte/flyte-core"),
        ("IAP040", E, "Service/flyte/flyteadmin"),
        ("IAP040", E, "Service/flyte/flyteconsole"),
    ],
    "flyte-binary-1.16-gce.yaml": [],
    "flyte-core-1.16-gce.yaml": [],
}


def summary(findings: list) -> list[tuple[str, str, str]]:
    return sorted((f.rule, f.severity, f.object) for f in findings)


def test_every_rendering_has_expectations() -> None:
    assert sorted(p.name for p in RENDERED.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_rendering_gives_exactly_the_expected_findings(name: str) -> None:
    assert summary(check_paths([RENDERED / name])) == sorted(EXPECTED[name])


def test_flyte_binary_naive_health_check_finding_names_the_grpc_port_only() -> None:
    [finding] = [
        f for f in check_paths([RENDERED / "flyte-binary-1.16-gce-naive.yaml"]) if f.rule == "IAP040"
    ]
    assert "8089/grpc" in finding.message
    assert "8088/http" not in finding.message  # the httpGet probe on port http covers that one


def test_flyte_binary_naive_with_partial_drops_the_missing_certificate_only() -> None:
    findings = check_paths([RENDERED / "flyte-binary-1.16-gce-naive.yaml"], partial=True)
    rules = sorted(f.rule for f in findings)
    assert rules == ["IAP013", "IAP024", "IAP032", "IAP040"]


BINARY = "flyte-binary-1.16-gce.yaml"
# flyteadmin's probes in the correct flyte-core rendering (httpGet HTTPS, set through the values), and
# the chart's default exec probes (flyteorg/flyte@v1.16.8:charts/flyte-core/values.yaml).
TLS_PROBES = (
    "          httpGet:\n            path: /healthcheck\n            port: 8088\n            scheme: HTTPS\n"
)
CHART_PROBES = (
    '          exec:\n            command: [ "sh", "-c", "reply=$(curl -s -o /dev/null -w %{http_code}'
    ' http://127.0.0.1:8088/healthcheck); if [ \\"$reply\\" -lt 200 -o \\"$reply\\" -ge 400 ];'
    ' then exit 1; fi;","grpc_health_probe", "-addr=:8089"]\n'
)
CORE = "flyte-core-1.16-gce.yaml"

# (rendering, what is broken, old text, new text, the findings it must bring back)
BREAKAGES = [
    (BINARY, "probes-without-https", "              scheme: HTTPS\n", "", {"IAP040", "IAP041"}),
    (
        BINARY,
        "self-call-to-closed-grpc-port",
        "endpoint: localhost:8088",
        "endpoint: localhost:8089",
        {"IAP026"},
    ),
    (
        BINARY,
        "self-call-plaintext-to-tls",
        "      insecure: false\n      insecureSkipVerify: true",
        "      insecure: true",
        {"IAP026"},
    ),
    (BINARY, "secure-off", "        secure: true", "        secure: false", {"IAP023", "IAP026"}),
    (
        BINARY,
        "no-app-protocols",
        '    cloud.google.com/app-protocols: \'{"http": "HTTP2"}\'\n',
        "",
        {"IAP024", "IAP040"},
    ),
    (
        BINARY,
        "load-balancer",
        "  type: ClusterIP\n  ports:\n    - name: http",
        "  type: LoadBalancer\n  ports:\n    - name: http",
        {"IAP001"},
    ),
    (
        BINARY,
        "class-name",
        "  rules:\n    - host: flyte.example.com",
        "  ingressClassName: gce\n  rules:\n    - host: flyte.example.com",
        {"IAP003"},
    ),
    (
        CORE,
        "chart-default-probes",
        TLS_PROBES,
        CHART_PROBES,
        {"IAP041"},
    ),
    (CORE, "propeller-on-port-81", "endpoint: flyteadmin:80", "endpoint: flyteadmin:81", {"IAP026"}),
    (CORE, "secure-off", "        secure: true", "        secure: false", {"IAP023", "IAP026"}),
    (
        CORE,
        "iap-off-for-console",
        "  name: flyteconsole-iap\n  namespace: flyte\nspec:\n  iap:\n    enabled: true",
        "  name: flyteconsole-iap\n  namespace: flyte\nspec:\n  iap:\n    enabled: false",
        {"IAP014"},
    ),
    (
        CORE,
        "no-console-health-check",
        "    port: 8080\n    requestPath: /console\n",
        "    port: 8080\n",
        {"IAP040"},
    ),
    (
        CORE,
        "certificate-for-other-host",
        "    - flyte.example.com\n",
        "    - flyte.example.org\n",
        {"IAP031"},
    ),
    (
        CORE,
        "redirect-off",
        "    enabled: true\n    responseCodeName",
        "    enabled: false\n    responseCodeName",
        {"IAP032"},
    ),
]


@pytest.mark.parametrize(
    ("name", "old", "new", "rules"),
    [pytest.param(n, o, w, r, id=f"{n.split('-1.16')[0]}-{what}") for n, what, o, w, r in BREAKAGES],
)
def test_breaking_a_correct_rendering_brings_back_its_rule(
    name: str, old: str, new: str, rules: set[str]
) -> None:
    text = (RENDERED / name).read_text()
    assert old in text
    findings = check_text(text.replace(old, new), name)
    assert {f.rule for f in findings} == rules


def test_core_rendering_without_its_configmaps_reports_nothing_that_needs_them() -> None:
    """With flyteadmin's configuration missing, secure is unknown: no finding may depend on it."""
    text = (RENDERED / CORE).read_text()
    text = text.replace(
        TLS_PROBES,
        CHART_PROBES,
    )
    docs = [d for d in text.split("\n---\n") if "\nkind: ConfigMap\n" not in d]
    assert check_text("\n---\n".join(docs), "partial.yaml") == []
