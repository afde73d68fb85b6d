"""Checks on the files under examples/ as a whole, beside the per-block checks of the pages.

Each deployment directory must be a coherent set (everything it references exists, and the Services
the chart renders from the matching values file fit it), every example must be shown by some page,
and the files the two deployments share must stay identical.
"""

from __future__ import annotations

import re

import pytest
from _harness import DOCS, EXAMPLES
from _harness.manifests import (
    CHARTS,
    check_deployment_set,
    cross_references,
    deployment_set,
    validate_file,
)


@pytest.mark.parametrize("chart", CHARTS)
def test_deployment_set_is_coherent_and_passes_flyte_iap_check(chart: str) -> None:
    assert check_deployment_set(chart) == ()


@pytest.mark.parametrize("path", sorted(p.relative_to(EXAMPLES) for p in EXAMPLES.rglob("*.yaml")), ids=str)
def test_example_file_is_valid(path) -> None:
    assert validate_file(EXAMPLES / path) == []


#: A page another writer has not written yet carries this line; examples only it will show may wait.
PLACEHOLDER = "% placeholder:"


def test_every_example_file_is_shown_by_a_page() -> None:
    included = set()
    placeholders = []
    for page in DOCS.rglob("*.md"):
        if "_build" in page.parts:
            continue
        text = page.read_text()
        if PLACEHOLDER in text:
            placeholders.append(str(page.relative_to(DOCS)))
        for target in re.findall(r"```\{literalinclude\}\s+(\S+)", text):
            included.add((page.parent / target).resolve())
    # A byte-identical copy of a shown file (the shared manifests of both deployments) counts as shown.
    shown = {p.read_bytes() for p in included if p.is_file()}
    missing = [
        str(p.relative_to(EXAMPLES))
        for p in EXAMPLES.rglob("*")
        if p.is_file() and p.resolve() not in included and p.read_bytes() not in shown
    ]
    guide = [m for m in missing if m.split("/")[0] in ("gke", "helm", "gcloud")]
    assert guide == []
    if missing and placeholders:
        pytest.skip(
            f"examples not shown yet ({', '.join(missing)}) while pages are placeholders: {', '.join(placeholders)}"
        )
    assert missing == []


def test_shared_manifests_are_identical_in_both_deployments() -> None:
    for name in ("managed-certificate.yaml", "frontend-config.yaml"):
        assert (EXAMPLES / "gke" / "flyte-binary" / name).read_text() == (
            EXAMPLES / "gke" / "flyte-core" / name
        ).read_text()


def test_a_wrong_service_port_in_the_gateway_is_caught() -> None:
    """The cross-reference check is not vacuous: a gateway pointing at a port the chart lacks fails."""
    objects, _ = deployment_set("flyte-binary")
    for obj in objects:
        if obj["kind"] == "ConfigMap":
            obj["data"]["envoy.yaml"] = obj["data"]["envoy.yaml"].replace(
                "port_value: 8089", "port_value: 9999"
            )
    assert any("port 9999" in p for p in cross_references(objects))


def test_a_values_file_that_keeps_the_separate_grpc_service_breaks_the_gateway() -> None:
    """flyte-binary's default separateGrpcIngress=true moves port 8089 to another Service."""
    objects, _ = deployment_set("flyte-binary")
    objects = [
        o
        for o in objects
        if not (o["kind"] == "Service" and o["metadata"]["name"].startswith("flyte-backend"))
    ]
    from _harness.manifests import chart_services

    objects += chart_services("flyte-binary", "flyte-backend", {"ingress": {"separateGrpcIngress": True}})
    assert any("flyte-backend-flyte-binary-http port 8089" in p for p in cross_references(objects))
