"""Checks a Flyte deployment's Kubernetes manifests for the mistakes that defeat IAP on GKE.

Example::

    from flyte_iap.manifest_check import check_paths, check_text

    for finding in check_paths(["rendered.yaml", "gke/"]):
        print(finding.rule, finding.severity, finding.object, f"{finding.file}:{finding.line}")
        print(finding.message, finding.fix, finding.url)

    findings = check_text(helm_template_output, "helm-template")

The rules (``RULES``, IDs ``IAP001``...) know how the GKE Ingress controller reads Ingresses,
Services, BackendConfigs, FrontendConfigs and ManagedCertificates, and what the flyte-binary and
flyte-core charts render; each reports only what the input shows. Objects of other kinds are ignored.
``rules_markdown()`` renders the rule list for the documentation.

Modules: :mod:`.loader` (YAML with line numbers), :mod:`.index` (objects by kind/name/namespace),
:mod:`.gce` (GKE controller semantics), :mod:`.flyte` (what Flyte deploys and how flyteadmin listens),
:mod:`.topology` (how objects connect), :mod:`.registry` (rules, findings), the ``rules_*`` modules,
:mod:`.check` (running them) and :mod:`.report` (text, JSON, Markdown). :mod:`.gateway` holds how GKE's
Gateway controller reads Gateways, HTTPRoutes and GKE's policies, for the rules in :mod:`.rules_gateway`.
"""

from __future__ import annotations

from flyte_iap.manifest_check import (  # noqa: F401
    rules_backend,
    rules_frontend,
    rules_gateway,
    rules_grpc,
    rules_ingress,
)
from flyte_iap.manifest_check.check import check_manifests, check_paths, check_text, deployments
from flyte_iap.manifest_check.loader import Manifest, ManifestError, load_paths, load_text, printable
from flyte_iap.manifest_check.registry import ERROR, IGNORE_ANNOTATION, RULES, WARNING, Finding, Rule
from flyte_iap.manifest_check.report import (
    format_json,
    format_json_error,
    format_text,
    rules_markdown,
    summary,
    summary_line,
)

__all__ = [
    "ERROR",
    "IGNORE_ANNOTATION",
    "RULES",
    "WARNING",
    "Finding",
    "Manifest",
    "ManifestError",
    "Rule",
    "check_manifests",
    "check_paths",
    "check_text",
    "deployments",
    "format_json",
    "format_json_error",
    "format_text",
    "load_paths",
    "load_text",
    "printable",
    "rules_markdown",
    "summary",
    "summary_line",
]
