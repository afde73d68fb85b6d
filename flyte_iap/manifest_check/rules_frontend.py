"""Rules about the load balancer's front end: certificates, HTTPS redirect, FrontendConfig.

Example::

    from flyte_iap.manifest_check import check_paths

    check_paths(["ingress.yaml", "certificate.yaml"])  # IAP031 if the certificate misses the host
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from flyte_iap.manifest_check import flyte, gce
from flyte_iap.manifest_check.loader import Manifest
from flyte_iap.manifest_check.registry import ERROR, WARNING, Context, Finding, rule


def _managed_certificates(ingress: Manifest) -> list[str]:
    return gce.split_annotation(ingress.annotations.get(gce.MANAGED_CERTS_ANNOTATION, ""))


def _has_tls(ingress: Manifest) -> bool:
    return bool(
        _managed_certificates(ingress)
        or ingress.annotations.get(gce.PRE_SHARED_CERT_ANNOTATION, "").strip()
        or ingress.spec.get("tls")
    )


def _domains(certificate: Manifest) -> list[str]:
    domains = certificate.spec.get("domains")
    return [str(d).strip().lower().rstrip(".") for d in (domains if isinstance(domains, list) else []) if d]


@rule(
    "IAP030",
    "managed-certificate-missing",
    severity=WARNING,
    title="managed-certificates names a ManagedCertificate that is not in the input",
    page="deploy/certificate",
    description="""
        `networking.gke.io/managed-certificates` names a ManagedCertificate (comma-separated names, same
        namespace as the Ingress) that the checked manifests do not contain. A warning (objects applied
        separately are normal; `--strict` makes it an error) that suggests a name only when one in the
        input is a likely misspelling; not reported with `--partial`.
    """,
    fix="Correct the name, or create the ManagedCertificate in the Ingress's namespace and check both.",
)
def managed_certificate_missing(ctx: Context) -> Iterator[Finding | None]:
    for ingress in ctx.topology.gce_ingresses:
        for name in _managed_certificates(ingress):
            if ctx.index.find("ManagedCertificate", name, ingress.namespace) is None:
                yield ctx.missing(
                    ingress,
                    ("metadata", "annotations", gce.MANAGED_CERTS_ANNOTATION),
                    "ManagedCertificate",
                    name,
                    f"{gce.MANAGED_CERTS_ANNOTATION} names ManagedCertificate {name}, which is not in the "
                    "input",
                )


@rule(
    "IAP031",
    "managed-certificate-domains",
    severity=ERROR,
    title="ManagedCertificate does not cover the Ingress host",
    page="deploy/certificate",
    description="""
        A host of the Ingress is not among the `spec.domains` of the ManagedCertificates it names
        (Google-managed certificates cannot hold wildcards). Browsers, flytectl and flytekit then get a
        certificate for another name and refuse the connection.
    """,
    fix="""
        Add the host to the ManagedCertificate's `spec.domains` (a ManagedCertificate's domains cannot
        be changed in place: create a new one, switch the annotation, delete the old one), or fix the
        Ingress host.
    """,
)
def managed_certificate_domains(ctx: Context) -> Iterator[Finding]:
    for ingress in ctx.topology.gce_ingresses:
        certificates = [
            c
            for name in _managed_certificates(ingress)
            if (c := ctx.index.find("ManagedCertificate", name, ingress.namespace)) is not None
        ]
        if not certificates:
            continue
        covered = {d for c in certificates for d in _domains(c)}
        names = ", ".join(c.name for c in certificates)
        rules = ingress.spec.get("rules")
        for position, item in enumerate(rules if isinstance(rules, list) else []):
            host = (
                str(item.get("host") or "").strip().lower().rstrip(".") if isinstance(item, Mapping) else ""
            )
            if not host or host in covered:
                continue
            detail = (
                "a Google-managed certificate cannot cover a wildcard host"
                if host.startswith("*")
                else f"it covers {', '.join(sorted(covered)) or 'no domain'}"
            )
            yield ctx.finding(
                ingress,
                f"host {host} is not covered by ManagedCertificate {names}: {detail}. Clients get a "
                "certificate for another name and refuse to connect.",
                at=("spec", "rules", position, "host"),
            )


@rule(
    "IAP032",
    "no-https-redirect",
    severity=WARNING,
    title="HTTP open without a redirect to HTTPS",
    page="deploy/certificate",
    description="""
        The Ingress serves HTTPS but also plain HTTP (`kubernetes.io/ingress.allow-http` is not
        `"false"`), and no FrontendConfig with `redirectToHttps.enabled: true` is attached. A client
        or link using `http://` then talks to IAP and Flyte in clear text, tokens included.
    """,
    fix="""
        Attach a FrontendConfig (`networking.gke.io/v1beta1.FrontendConfig: NAME`) whose spec has
        `redirectToHttps: {enabled: true}`, or set `kubernetes.io/ingress.allow-http: "false"`.
    """,
)
def no_https_redirect(ctx: Context) -> Iterator[Finding]:
    for ingress in ctx.topology.iap_ingresses:
        if not _has_tls(ingress) or not gce.allow_http(ingress):
            continue
        name = ingress.annotations.get(gce.FRONTEND_CONFIG_ANNOTATION, "").strip()
        if name:
            frontend = ctx.index.find("FrontendConfig", name, ingress.namespace)
            if frontend is None:
                continue  # IAP033
            redirect = frontend.spec.get("redirectToHttps")
            if isinstance(redirect, Mapping) and redirect.get("enabled") is True:
                continue
            yield ctx.finding(
                ingress,
                f"HTTP is allowed and {frontend.ref} does not enable redirectToHttps: "
                "http:// requests are served in clear text.",
                at=("metadata", "annotations", gce.FRONTEND_CONFIG_ANNOTATION),
            )
        else:
            yield ctx.finding(
                ingress,
                'HTTP is allowed (kubernetes.io/ingress.allow-http is not "false") and no FrontendConfig '
                "redirects it to HTTPS: http:// requests are served in clear text.",
                at=("metadata", "annotations"),
            )


@rule(
    "IAP033",
    "frontend-config-missing",
    severity=WARNING,
    title="FrontendConfig annotation names a FrontendConfig that is not in the input",
    page="deploy/certificate",
    description="""
        `networking.gke.io/v1beta1.FrontendConfig` names a FrontendConfig the checked manifests do not
        contain (it must be in the Ingress's namespace). A warning (objects applied separately are
        normal; `--strict` makes it an error) that suggests a name only when one in the input is a
        likely misspelling; not reported with `--partial`.
    """,
    fix="Correct the name, or create the FrontendConfig in the Ingress's namespace and check both together.",
)
def frontend_config_missing(ctx: Context) -> Iterator[Finding | None]:
    for ingress in ctx.topology.gce_ingresses:
        name = ingress.annotations.get(gce.FRONTEND_CONFIG_ANNOTATION, "").strip()
        if name and ctx.index.find("FrontendConfig", name, ingress.namespace) is None:
            yield ctx.missing(
                ingress,
                ("metadata", "annotations", gce.FRONTEND_CONFIG_ANNOTATION),
                "FrontendConfig",
                name,
                f"{gce.FRONTEND_CONFIG_ANNOTATION} names FrontendConfig {name}, which is not in the input",
            )


@rule(
    "IAP034",
    "no-tls-certificate",
    severity=ERROR,
    title="IAP-protected Ingress without any TLS certificate",
    page="deploy/certificate",
    description="""
        A GKE Ingress that serves Flyte has no certificate: no `networking.gke.io/managed-certificates`,
        no `ingress.gcp.kubernetes.io/pre-shared-cert` and no `spec.tls`. The load balancer then
        serves plain HTTP only; IAP needs HTTPS, and Flyte's clients connect with TLS.
    """,
    fix="""
        Create a ManagedCertificate for the host and name it in
        `networking.gke.io/managed-certificates` (or use a pre-shared certificate or `spec.tls`).
    """,
)
def no_tls_certificate(ctx: Context) -> Iterator[Finding]:
    for ingress in ctx.topology.iap_ingresses:
        if not _has_tls(ingress):
            flyte_owned = any(ctx.topology.is_flyte(b.service) for b, _ in ctx.topology.backends(ingress))
            flyte_owned = flyte_owned or any(flyte.path_kind(r.path) for r in ctx.topology.routes(ingress))
            what = "serves Flyte" if flyte_owned else "uses IAP"
            clients = "IAP and Flyte's clients need" if flyte_owned else "IAP needs"
            yield ctx.finding(
                ingress,
                f"this Ingress {what} but has no TLS certificate (managed-certificates, pre-shared-cert "
                f"or spec.tls): the load balancer serves HTTP only, and {clients} HTTPS.",
                at=("metadata", "annotations") if ingress.annotations else ("metadata",),
                flyte=flyte_owned,
            )


# GKE's documentation: Google-managed certificates (ManagedCertificate) are for Ingresses that
# create external load balancers (kubernetes-engine/docs/how-to/managed-certs: "use Ingress objects
# to create external load balancers with Google-managed SSL certificates"); Ingress for internal
# Application Load Balancers supports self-managed certificates, regional ones only, and Kubernetes
# Secrets (kubernetes-engine/docs/concepts/ingress-ilb, "Support for Google Cloud features").
# ManagedCertificate provisions global certificates, which a regional load balancer (internal or
# regional external) cannot use.
_MANAGED_CERTIFICATE_SCOPES = ("external",)


@rule(
    "IAP035",
    "managed-certificate-regional",
    severity=ERROR,
    title="Google-managed certificate on an internal or regional Ingress",
    page="deploy/certificate",
    description="""
        `networking.gke.io/managed-certificates` on an Ingress of class `gce-internal` or
        `gce-regional-external`. GKE's Google-managed certificates (ManagedCertificate) work with
        external (global) load balancers only; the internal Application Load Balancer accepts regional
        self-managed certificates and Kubernetes Secrets. The certificate never reaches the load
        balancer, which then has no certificate for the host.
    """,
    fix="""
        Use a certificate from a Kubernetes Secret (`spec.tls`) or a regional pre-shared certificate
        (`ingress.gcp.kubernetes.io/pre-shared-cert`), or make the Ingress external (class `gce`).
    """,
)
def managed_certificate_regional(ctx: Context) -> Iterator[Finding]:
    for ingress in ctx.topology.gce_ingresses:
        scope = gce.scope(ingress)
        if scope in _MANAGED_CERTIFICATE_SCOPES or not _managed_certificates(ingress):
            continue
        yield ctx.finding(
            ingress,
            f"this Ingress (class {gce.class_annotation(ingress) or gce.class_name(ingress)}) creates an "
            f"{scope} load balancer, which cannot use the Google-managed certificates named in "
            f"{gce.MANAGED_CERTS_ANNOTATION}: they serve external load balancers only.",
            at=("metadata", "annotations", gce.MANAGED_CERTS_ANNOTATION),
        )
