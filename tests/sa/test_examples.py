"""The CI and workload examples under examples/ are valid, and work end to end against the local fakes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from flytekit.configuration import Config, PlatformConfig
from helpers.sa import CI_SA, JWT_SUBJECT_TOKEN, POOL_PROVIDER

from flyte_iap.testing import FakeFlyteAdmin, FakeGoogle, IapProxy

ROOT = Path(__file__).resolve().parents[2]
CI = ROOT / "examples" / "ci"
WORKLOADS = ROOT / "examples" / "workloads"
EXAMPLE_AUDIENCE = "123456789012-iap.apps.googleusercontent.com"
SA_TOKEN = ["flyte-iap", "sa-token", "--audience", EXAMPLE_AUDIENCE]


def _workflow() -> dict[Any, Any]:
    return yaml.safe_load((CI / "github-actions-wif.yml").read_text())


def _steps() -> list[dict[str, Any]]:
    return _workflow()["jobs"]["register-and-run"]["steps"]


def _flyte_env(iap: IapProxy, **extra: str) -> dict[str, str]:
    """The test environment, with flytekit sent to the local IAP and flyte-iap on PATH."""
    env = dict(os.environ)
    env.update(
        FLYTE_PLATFORM_URL=iap.endpoint,  # overrides admin.endpoint of the example config
        FLYTE_PLATFORM_INSECURE="True",  # the local IAP speaks plaintext HTTP/2
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
    )
    env.update(extra)
    return env


# -- examples/ci ---------------------------------------------------------------------------------


def test_ci_config_runs_sa_token_as_proxy_command_with_flyteadmin_client_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLYTE_CLIENT_SECRET", "from-github-secrets")

    platform = PlatformConfig.auto(config_file=str(CI / "flyte-config-ci.yaml"))

    assert platform.proxy_command == SA_TOKEN
    assert platform.endpoint == "flyte.example.com"
    assert platform.insecure is False
    assert platform.auth_mode == "ClientSecret"
    assert platform.client_id == "flyte-ci"
    assert platform.client_credentials_secret == "from-github-secrets"
    assert Config.auto(config_file=str(CI / "flyte-config-ci.yaml")).platform.proxy_command == SA_TOKEN


def test_github_workflow_authenticates_with_wif_before_anything_needs_a_token() -> None:
    workflow = _workflow()
    steps = _steps()
    uses = [step.get("uses", "") for step in steps]
    auth = steps[uses.index("google-github-actions/auth@v3")]
    runs = [step.get("run", "") for step in steps]

    assert workflow["permissions"]["id-token"] == "write"
    assert auth["with"]["workload_identity_provider"].startswith("projects/123456789012/locations/global/")
    assert auth["with"]["service_account"] == CI_SA.replace("fake-project", "my-project")
    assert "credentials_json" not in auth["with"]  # no key anywhere
    first_token_use = next(i for i, run in enumerate(runs) if "flyte-iap sa-token" in run or "pyflyte" in run)
    assert uses.index("google-github-actions/auth@v3") < first_token_use
    assert workflow["env"]["IAP_CLIENT_ID"] == EXAMPLE_AUDIENCE
    assert 'flyte-iap sa-token --audience "$IAP_CLIENT_ID"' in runs[first_token_use]


def test_github_workflow_points_pyflyte_at_the_example_config() -> None:
    commands = [step["run"] for step in _steps() if "pyflyte" in step.get("run", "")]

    assert len(commands) == 2
    for command in commands:
        assert command.startswith("pyflyte --config examples/ci/flyte-config-ci.yaml ")
    assert (ROOT / "examples/ci/flyte-config-ci.yaml").is_file()
    assert " register " in commands[0] and " run --remote " in commands[1]


class _GitHubOidc:
    """GitHub's ACTIONS_ID_TOKEN_REQUEST_URL: JSON ``{"value": <OIDC token>}`` for the job's bearer token."""

    BEARER = "github-actions-request-token"

    def __init__(self, subject_token: str) -> None:
        self.subject_token = subject_token
        self.audiences: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.headers.get("Authorization") != f"Bearer {outer.BEARER}":
                    self.send_response(401)
                    self.end_headers()
                    return
                outer.audiences.append(self.path.partition("audience=")[2])
                body = json.dumps({"count": 1, "value": outer.subject_token}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/token?api-version=2.0"


@pytest.fixture
def github_oidc(fake_google: FakeGoogle) -> Iterator[_GitHubOidc]:
    oidc = _GitHubOidc(fake_google.mint_subject_token(POOL_PROVIDER))
    yield oidc
    oidc.server.shutdown()
    oidc.server.server_close()


def _gha_credentials(fake_google: FakeGoogle, oidc: _GitHubOidc, path: Path) -> Path:
    """The external_account file google-github-actions/auth writes (URL-sourced subject token)."""
    audience = "https:" + POOL_PROVIDER
    path.write_text(
        json.dumps(
            {
                "type": "external_account",
                "audience": POOL_PROVIDER,
                "subject_token_type": JWT_SUBJECT_TOKEN,
                "token_url": fake_google.sts_token_url,
                "credential_source": {
                    "url": f"{oidc.url}&audience={audience}",
                    "headers": {"Authorization": f"Bearer {oidc.BEARER}"},
                    "format": {"type": "json", "subject_token_field_name": "value"},
                },
                "service_account_impersonation_url": fake_google.generate_access_token_url(CI_SA),
            }
        )
    )
    return path


def test_ci_example_reaches_flyteadmin_through_iap_with_federated_credentials(
    fake_google: FakeGoogle, github_oidc: _GitHubOidc, tmp_path: Path
) -> None:
    pool = fake_google.add_workload_identity_pool(POOL_PROVIDER)
    fake_google.allow_impersonation(pool["principal_set"], CI_SA)
    credentials = _gha_credentials(fake_google, github_oidc, tmp_path / "gha-creds-1234.json")
    script = (
        "import sys\n"
        "from flytekit.configuration import Config\n"
        "from flytekit.remote import FlyteRemote\n"
        "remote = FlyteRemote(Config.auto(config_file=sys.argv[1]))\n"
        "projects, _ = remote.client.list_projects_paginated(limit=10)\n"
        "print(' '.join(sorted(p.id for p in projects)))\n"
    )
    with (
        FakeFlyteAdmin(auth=True, client_id="flyte-ci", projects=["flytesnacks"]) as admin,
        IapProxy(
            EXAMPLE_AUDIENCE,
            certs_url=fake_google.certs_url,
            allowed=[f"serviceAccount:{CI_SA}"],
            http_upstream=admin.http_url,
            grpc_upstream=admin.grpc_target,
        ) as iap,
    ):
        admin.public_url = iap.url  # flyteadmin's token endpoint is reached through IAP too
        env = _flyte_env(
            iap, GOOGLE_APPLICATION_CREDENTIALS=str(credentials), FLYTE_CLIENT_SECRET=admin.client_secret
        )
        result = subprocess.run(
            [sys.executable, "-c", script, str(CI / "flyte-config-ci.yaml")],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["flytesnacks"]
        (listed,) = admin.calls_to("ListProjects")[-1:]
        assert listed.metadata.get("flyte-authorization", "").startswith("Bearer ")
        assert "proxy-authorization" not in listed.metadata  # IAP strips it
        assert {f.email for f in iap.forwarded} == {CI_SA}
    assert github_oidc.audiences  # the subject token came from the job's OIDC endpoint
    assert len(fake_google.requests_to("/v1/token")) == 1  # one STS exchange: the rest came from the cache
    assert len(fake_google.requests_to("/v1/projects/-/serviceAccounts/")) == 1


# -- examples/workloads ----------------------------------------------------------------------------


def test_workload_service_account_manifest_is_valid_and_annotated() -> None:
    (manifest,) = list(yaml.safe_load_all((WORKLOADS / "kubernetes-serviceaccount.yaml").read_text()))

    kubernetes_validate.validate(manifest, "1.30.0", strict=True)
    assert manifest["kind"] == "ServiceAccount"
    assert manifest["metadata"]["namespace"] == "flytesnacks-development"  # Flyte's PROJECT-DOMAIN namespace
    gsa = manifest["metadata"]["annotations"]["iam.gke.io/gcp-service-account"]
    assert gsa == f"{manifest['metadata']['name']}@my-project.iam.gserviceaccount.com"
    text = (WORKLOADS / "kubernetes-serviceaccount.yaml").read_text()
    assert "serviceAccount:my-project.svc.id.goog[flytesnacks-development/flyte-launcher]" in text
    assert "--service-account flyte-launcher" in (WORKLOADS / "upstream_gate.py").read_text()


def test_workload_config_runs_sa_token_as_proxy_command() -> None:
    platform = PlatformConfig.auto(config_file=str(WORKLOADS / "flyte-config.yaml"))

    assert platform.proxy_command == SA_TOKEN
    assert platform.endpoint == "flyte.example.com"


def test_flyte_task_asks_flyteadmin_through_iap_with_the_pods_metadata_token(fake_google: FakeGoogle) -> None:
    script = (
        "import sys\n"
        f"sys.path.insert(0, {str(WORKLOADS)!r})\n"
        "from upstream_gate import upstream_succeeded\n"
        "print(upstream_succeeded(project='ingest', domain='production', launch_plan='ingest.daily'))\n"
        "print(upstream_succeeded(project='ingest', domain='production', launch_plan='ingest.hourly'))\n"
    )
    with (
        FakeFlyteAdmin(projects=["ingest"]) as admin,
        IapProxy(
            EXAMPLE_AUDIENCE,
            certs_url=fake_google.certs_url,
            allowed=[f"serviceAccount:{fake_google.metadata_service_account}"],
            grpc_upstream=admin.grpc_target,
            http_upstream=admin.http_url,
        ) as iap,
    ):
        admin.add_execution("daily1", project="ingest", domain="production", launch_plan="ingest.daily")
        admin.add_execution(
            "hourly1", project="ingest", domain="production", launch_plan="ingest.hourly", phase="FAILED"
        )
        result = subprocess.run(
            [sys.executable, "-c", script], env=_flyte_env(iap), capture_output=True, text=True, timeout=120
        )

        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["True", "False"]
        assert iap.passed["grpc"] >= 2
        assert {f.email for f in iap.forwarded} == {fake_google.metadata_service_account}
    identity = fake_google.requests_to("/computeMetadata/v1/instance/service-accounts/default/identity")
    assert len(identity) == 1 and identity[0].query["audience"] == EXAMPLE_AUDIENCE


def test_rest_client_lists_projects_through_iap(
    fake_google: FakeGoogle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(WORKLOADS))
    import rest_client

    with (
        FakeFlyteAdmin(projects=["flytesnacks", "ingest"]) as admin,
        IapProxy(
            EXAMPLE_AUDIENCE,
            certs_url=fake_google.certs_url,
            allowed=[f"serviceAccount:{fake_google.metadata_service_account}"],
            http_upstream=admin.http_url,
        ) as iap,
    ):
        projects = rest_client.list_projects(iap.url, EXAMPLE_AUDIENCE)

        assert sorted(projects) == ["flytesnacks", "ingest"]
        (request,) = admin.requests_to("/api/v1/projects")
        assert "proxy-authorization" not in request.headers
        assert iap.passed["http"] == 1
