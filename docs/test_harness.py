"""The doc harness fails where a reader would be misled: these pin the checks that are easy to break."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from _harness import BlockFailure
from _harness.cli_help import available
from _harness.manifests import chart_services, validate_values
from _harness.sandbox import DocSandbox
from _harness.shell import ShellBlock, output_matches, parse_console, parse_script

PAGE = str(Path(__file__).parent / "deploy" / "example.md")
EXAMPLES = Path(__file__).parent.parent / "examples"
#: the hand-built flyte-core rendering of tests/check (its flyteadmin Deployment is replaced here)
RENDERED_CORE = (
    Path(__file__).parent.parent / "tests" / "check" / "data" / "rendered" / "flyte-core-1.16-gce.yaml"
)


@pytest.fixture
def sandbox(tmp_path: Path) -> DocSandbox:
    box = DocSandbox(tmp_path)
    yield box
    box.close()


def run(sandbox: DocSandbox, source: str, first_line: int = 10) -> None:
    ShellBlock(sandbox, PAGE).run(parse_console(source, first_line))


@pytest.mark.skipif(not available("gcloud"), reason="gcloud is not installed")
def test_misspelled_gcloud_flag_fails_at_the_page_line(sandbox: DocSandbox) -> None:
    source = "$ gcloud compute addresses create flyte-ip \\\n    --globl --project=my-project\n"
    with pytest.raises(BlockFailure) as exc:
        run(sandbox, source, first_line=7)
    assert str(exc.value).startswith("docs/deploy/example.md:7: ")
    assert "has no flag --globl (did you mean --global?)" in str(exc.value)


@pytest.mark.skipif(not available("gcloud"), reason="gcloud is not installed")
def test_gcloud_value_flags_must_use_equals_and_required_flags_must_be_there(sandbox: DocSandbox) -> None:
    with pytest.raises(BlockFailure, match="--project takes a value: write it as --project=VALUE"):
        run(sandbox, "$ gcloud compute addresses create flyte-ip --global --project my-project\n")
    with pytest.raises(BlockFailure, match="requires --role"):
        run(sandbox, "$ gcloud iap web add-iam-policy-binding --member=user:a@example.com\n")


def test_flyte_iap_output_is_compared_with_the_page(sandbox: DocSandbox) -> None:
    run(sandbox, "$ flyte-iap --version\nflyte-iap, version ...\n")
    with pytest.raises(BlockFailure, match="output differs from the page"):
        run(sandbox, "$ flyte-iap --version\nflyte-iap, version 0.0.0-not-this\n")


def test_a_command_that_is_only_checked_may_not_show_output(sandbox: DocSandbox) -> None:
    with pytest.raises(BlockFailure, match="only checked, not run"):
        run(sandbox, '$ helm repo add flyteorg https://flyteorg.github.io/flyte\n"flyteorg" has been added\n')


def test_helm_template_piped_into_flyte_iap_check_with_its_output_shown_is_run(sandbox: DocSandbox) -> None:
    """The chart's rendering is rebuilt (no Helm here) and the page's own check arguments are run."""
    base = (
        "$ helm template flyte flyteorg/flyte-binary --version v2.0.43 --namespace flyte "
        "--values examples/helm/flyte-binary-v2/values-gke-iap.yaml | flyte-iap check - {dir}\n{out}"
    )
    block = ShellBlock(sandbox, PAGE)
    block.run(
        parse_console(
            base.format(dir="examples/gke/flyte2/", out="no problems found (6 files, 8 objects checked)\n"),
            10,
        )
    )
    assert block.executed
    # the Flyte 2 chart's Services beside Flyte 1's manifests: their BackendConfigs are not there
    with pytest.raises(BlockFailure, match=r"(?s)output differs from the page.*IAP011"):
        run(sandbox, base.format(dir="examples/gke/flyte-binary/", out="no problems found ...\n"))


def test_helm_install_must_use_the_release_version_and_values_the_manifests_assume(
    sandbox: DocSandbox,
) -> None:
    base = "$ helm install {release} flyteorg/flyte-binary --version {version} --namespace flyte --values {values}\n"
    good = {
        "release": "flyte-backend",
        "version": "v1.16.8",
        "values": "examples/helm/flyte-binary/values-gke-iap.yaml",
    }
    run(sandbox, base.format(**good))
    with pytest.raises(BlockFailure, match="assume the release name 'flyte-backend'"):
        run(sandbox, base.format(**{**good, "release": "flyte"}))
    with pytest.raises(BlockFailure, match="pin the chart"):
        run(sandbox, base.format(**{**good, "version": "v1.15.0"}))
    with pytest.raises(BlockFailure, match="is not a values file of flyte-binary"):
        run(sandbox, base.format(**{**good, "values": "examples/helm/flyte-core/values-gke-iap.yaml"}))


def test_a_program_without_a_rule_fails_instead_of_passing(sandbox: DocSandbox) -> None:
    with pytest.raises(BlockFailure, match="no rule for `curl`"):
        ShellBlock(sandbox, PAGE).run(parse_script("curl https://flyte.example.com/healthcheck\n", 3))


def test_ellipsis_stands_for_lines_or_text() -> None:
    assert output_matches(["first", "...", "last"], "first\nsecond\nthird\nlast\n")
    assert output_matches(["token eyJ..."], "token eyJhbGciOi.abc\n")
    assert not output_matches(["first", "last"], "first\nsecond\nlast\n")


def test_values_key_typo_is_reported_with_the_key_it_meant() -> None:
    problems = validate_values("flyte-binary", [{"ingress": {"separateGrpcIngres": False}}])
    assert problems == [
        "ingress.separateGrpcIngres: not a value of the flyte-binary chart v1.16.8 "
        "(did you mean ingress.separateGrpcIngress?)"
    ]
    assert (
        validate_values("flyte-core", [{"flyteadmin": {"service": {"annotations": {"any": "thing"}}}}]) == []
    )


def test_values_misspelled_nested_key_fails_below_a_documented_map() -> None:
    values = {"flyteadmin": {"service": {"type": "ClusterIP", "anotations": {"cloud.google.com/neg": "{}"}}}}
    assert validate_values("flyte-core", [values]) == [
        "flyteadmin.service.anotations: not a value of the flyte-core chart v1.16.8 "
        "(did you mean flyteadmin.service.annotations?)"
    ]
    assert validate_values("flyte-core", [{"configmap": {"adminServr": {"server": {}}}}]) == [
        "configmap.adminServr: not a value of the flyte-core chart v1.16.8 (did you mean configmap.adminServer?)"
    ]
    assert validate_values("flyte-binary", [{"deployment": {"waitForDB": {"image": {"tagg": "16"}}}}]) == [
        "deployment.waitForDB.image.tagg: not a value of the flyte-binary chart v1.16.8 "
        "(did you mean deployment.waitForDB.image.tag?)"
    ]


def test_values_below_a_free_form_prefix_pass_but_the_prefix_must_be_a_mapping() -> None:
    # configmap.adminServer is rendered verbatim into flyteadmin's server.yaml: its keys are flyteadmin's.
    secure = {"configmap": {"adminServer": {"server": {"security": {"ssl": {"keyFile": "/k"}}}}}}
    assert validate_values("flyte-core", [secure]) == []
    assert (
        validate_values("flyte-binary", [{"configuration": {"inline": {"any": {"flyte": "setting"}}}}]) == []
    )
    assert validate_values("flyte-binary", [{"serviceAccount": {"annotations": "iam.gke.io/x"}}]) == [
        "serviceAccount.annotations: the chart expects a mapping, not 'iam.gke.io/x'"
    ]
    assert validate_values("flyte-binary", [{"service": {"type": {"name": "ClusterIP"}}}]) == [
        "service.type: the chart expects a single value, not dict {'name': 'ClusterIP'}"
    ]


def test_flyte_binary_services_carry_service_annotations_like_the_chart() -> None:
    values = {
        "commonAnnotations": {"team": "ml", "order": "common"},
        "service": {
            "annotations": {"cloud.google.com/neg": '{"ingress": true}', "order": "service"},
            "commonAnnotations": {"order": "service-common"},
            "grpcAnnotations": {"order": "grpc"},
            "labels": {"tier": "backend"},
            "extraPorts": [{"name": "metrics", "port": 10254}],
        },
        "ingress": {"separateGrpcIngress": True},
    }
    http, grpc = chart_services("flyte-binary", "flyte-backend", values)
    assert http["metadata"]["annotations"] == {
        "team": "ml",
        "order": "service-common",
        "cloud.google.com/neg": '{"ingress": true}',
    }
    assert grpc["metadata"]["annotations"]["order"] == "grpc"
    assert grpc["metadata"]["annotations"]["cloud.google.com/neg"] == '{"ingress": true}'
    assert http["metadata"]["labels"]["tier"] == "backend"
    assert [p["name"] for p in http["spec"]["ports"]] == ["http", "metrics"]
    assert [p["name"] for p in grpc["spec"]["ports"]] == ["grpc"]


# -- pip lines and ```console session blocks (the install page, the try-it-locally walkthrough) ---------


def session(sandbox: DocSandbox, source: str) -> None:
    ShellBlock(sandbox, PAGE).run_session(parse_console(source, 10))


@pytest.mark.parametrize(
    "line",
    [
        "$ pip install flyte-iap\n",
        "$ pip install 'flyte-iap[keyring]'\n",
        "$ python -m pip install ./flyte-iap[nosuchextra]\n",
        "$ pip install dist/flyte_iap-0.1.0.tar.gz\n",
        "$ pipx inject other-app keyring\n",
    ],
)
def test_pip_lines_that_cannot_install_flyte_iap_fail(sandbox: DocSandbox, line: str) -> None:
    with pytest.raises(BlockFailure):
        run(sandbox, line)


@pytest.mark.parametrize(
    "line",
    [
        "$ python -m pip install ./flyte-iap\n",
        "$ pip install 'flytekit>=1.13.1' './flyte-iap[keyring,testing]'\n",
        "$ python -m pip install dist/flyte_iap-*-py3-none-any.whl\n",
        "$ pipx install ./flyte-iap\n",
        "$ pipx inject flyte-iap keyring\n",
    ],
)
def test_pip_lines_that_install_from_a_clone_or_the_built_wheel_pass(sandbox: DocSandbox, line: str) -> None:
    run(sandbox, line)


def test_a_session_keeps_state_between_commands_and_compares_every_output(sandbox: DocSandbox) -> None:
    session(sandbox, '$ export GREETING=hello\n$ cd "$(mktemp -d)"\n$ echo "$GREETING"\nhello\n')
    with pytest.raises(BlockFailure, match="output differs"):
        session(sandbox, "$ echo one\ntwo\n")
    with pytest.raises(BlockFailure, match="output differs"):
        session(sandbox, "$ echo unshown output\n")


def test_a_failing_session_command_fails_at_its_line(sandbox: DocSandbox) -> None:
    with pytest.raises(BlockFailure, match=r"example\.md:11: `false`\nexited 1"):
        session(sandbox, "$ true\n$ false\n$ echo never\nnever\n")


# -- behaviour: flyteadmin's secure mode with the page's own certificate ---------------------------

_CORE_CERT = (
    "$ openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -keyout tls.key -out tls.crt \\\n"
    '    -subj "/CN=flyteadmin.flyte.svc" \\\n'
    '    -addext "subjectAltName={sans}"\n'
    "$ kubectl --namespace=flyte create secret tls flyteadmin-tls --cert=tls.crt --key=tls.key\n"
)
_OLD_SANS = "DNS:flyteadmin,DNS:flyteadmin.flyte.svc,DNS:flyteadmin.flyte.svc.cluster.local"


@pytest.mark.skipif(not available("kubectl"), reason="kubectl is not installed")
def test_flyteadmin_tls_secret_without_the_host_address_name_fails_the_rest_api(sandbox: DocSandbox) -> None:
    """The certificate the guide used to make: /healthcheck passes, /api/v1/projects fails (503, x509)."""
    with pytest.raises(BlockFailure) as exc:
        run(sandbox, _CORE_CERT.format(sans=_OLD_SANS))
    assert "breaks its REST API" in str(exc.value)
    assert "answered 503" in str(exc.value)
    assert "not 0.0.0.0:8088" in str(exc.value)


@pytest.mark.skipif(not available("kubectl"), reason="kubectl is not installed")
def test_flyteadmin_tls_secret_with_the_host_address_name_serves_the_rest_api(sandbox: DocSandbox) -> None:
    run(sandbox, _CORE_CERT.format(sans="DNS:0.0.0.0:8088," + _OLD_SANS))


def test_the_guide_makes_the_flyteadmin_certificate_that_the_rest_api_needs() -> None:
    """The flyte-core tab of the backend page: its openssl command names 0.0.0.0:<httpPort>."""
    from _harness.behaviour import flyte_core_http_port

    page = (Path(__file__).parent / "deploy" / "grpc-backend.md").read_text()
    assert f"DNS:0.0.0.0:{flyte_core_http_port()}," in page
    assert "kubectl --namespace=flyte create secret tls flyteadmin-tls" in page


# chart default probes: flyteorg/flyte@v1.16.8:charts/flyte-core/values.yaml (flyteadmin.*Probe)
_CHART_PROBE_COMMAND = (
    '[ "sh", "-c", "reply=$(curl -s -o /dev/null -w %{http_code} http://127.0.0.1:8088/healthcheck); '
    'if [ \\"$reply\\" -lt 200 -o \\"$reply\\" -ge 400 ]; then exit 1; fi;","grpc_health_probe", "-addr=:8089"]'
)
_CHART_PROBES = {
    "readinessProbe": f"exec:\n  command: {_CHART_PROBE_COMMAND}\ninitialDelaySeconds: 15",
    "livenessProbe": f"exec:\n  command: {_CHART_PROBE_COMMAND}\ninitialDelaySeconds: 20\nperiodSeconds: 5",
}


def test_flyte_core_values_give_flyteadmin_probes_that_work_in_secure_mode() -> None:
    """Render flyteadmin's probes as the chart does (`readinessProbe:` + the string, nindent 10) and check them."""
    import re

    import yaml

    from flyte_iap.manifest_check import check_text

    values = yaml.safe_load((EXAMPLES / "helm" / "flyte-core" / "values-gke-iap.yaml").read_text())
    assert values["configmap"]["adminServer"]["server"]["security"]["secure"] is True
    rendered = ""
    for kind in ("readinessProbe", "livenessProbe"):
        text = values.get("flyteadmin", {}).get(kind, _CHART_PROBES[kind])
        assert isinstance(text, str), f"flyteadmin.{kind} is a string in flyte-core (rendered verbatim)"
        rendered += f"        {kind}:" + "".join("\n          " + line for line in text.splitlines()) + "\n"
    chart_output = RENDERED_CORE.read_text()
    chart_output, n = re.subn(
        r"        readinessProbe:\n(?:.*\n)*?(?=        resources:)", rendered, chart_output, count=1
    )
    assert n == 1
    findings = [f for f in check_text(chart_output, "flyte-core.yaml") if f.rule == "IAP041"]
    assert findings == []


# -- one IAP client ID: the BackendConfig's Secret and every client's audience ----------------------

_CLIENT_ID = re.compile(r"\d{12}-[a-z0-9-]+\.apps\.googleusercontent\.com")
_AUDIENCE = re.compile(
    r"(?:--audiences?|\baudience|AUDIENCE)[\"']?\s*[:=,]?\s*(?:-\s+)?[\"']?(" + _CLIENT_ID.pattern + ")"
)
#: audiences that differ on purpose -> (the only page where they may appear, why)
_DELIBERATE = {
    "123456789012-staging-iap.apps.googleusercontent.com": ("troubleshooting.md", "the mismatch error"),
    "999999999999-iap.apps.googleusercontent.com": (
        "troubleshooting.md",
        "invalid_audience: an app client in another project than the Desktop client",
    ),
    "123456789012-desktop.apps.googleusercontent.com": (
        "troubleshooting.md",
        "Google-managed client: the allowlisted Desktop client's own ID is the audience",
    ),
}
#: oauth-clients.md explains the client modes (Google-managed vs custom), and is checked on its own
_OWN_CHECKS = {"oauth-clients.md"}


def _guide_files() -> list[Path]:
    docs = Path(__file__).parent
    pages = [p for p in docs.rglob("*.md") if "_build" not in p.parts and p.name not in _OWN_CHECKS]
    examples = [p for p in EXAMPLES.rglob("*") if p.suffix in (".yaml", ".yml", ".py", ".md")]
    return pages + examples


def test_clients_audience_is_the_client_id_in_the_backendconfig_secret() -> None:
    from _harness.behaviour import IAP_CLIENT_ID

    secret_names = set()
    for config in EXAMPLES.glob("gke/*/backend-config.yaml"):
        for doc in yaml.safe_load_all(config.read_text()):
            creds = (doc or {}).get("spec", {}).get("iap", {}).get("oauthclientCredentials")
            if creds:
                secret_names.add(creds["secretName"])
    assert len(secret_names) == 1, f"the BackendConfigs name several Secrets: {secret_names}"
    [secret] = secret_names

    secret_ids: dict[str, set[str]] = {}
    audiences: dict[str, set[str]] = {}
    for path in _guide_files():
        text = path.read_text()
        joined = re.sub(r"\\\n\s*", " ", text)  # console continuation lines
        for command in re.findall(rf"create secret generic {secret}\b[^\n]*", joined):
            for found in re.findall(r"client_id=(\S+)", command):
                secret_ids.setdefault(found, set()).add(path.name)
        for found in _AUDIENCE.findall(text):
            if _DELIBERATE.get(found, ("",))[0] != path.name:
                audiences.setdefault(found, set()).add(path.name)

    assert secret_ids, f"no page creates the Secret {secret} with a client_id"
    assert set(secret_ids) == {IAP_CLIENT_ID}, f"the Secret {secret} holds {secret_ids}"
    assert sum(len(v) for v in audiences.values()) >= 5, (
        "found too few audiences to compare: check the pattern"
    )
    assert set(audiences) == {IAP_CLIENT_ID}, (
        f"clients use other audiences than the Secret's client_id: {audiences}"
    )


# -- the flyte-binary gateway's operations -----------------------------------------------------------


def _gateway_objects() -> dict[str, dict]:
    docs = yaml.safe_load_all((EXAMPLES / "gke" / "flyte-binary" / "gateway.yaml").read_text())
    return {d["kind"]: d for d in docs if d}


def test_gateway_keeps_serving_while_the_load_balancer_drains_its_endpoint() -> None:
    """Envoy exits at once on SIGTERM: a preStop wait must cover the BackendConfig's draining time."""
    backend = yaml.safe_load((EXAMPLES / "gke" / "flyte-binary" / "backend-config.yaml").read_text())
    draining = backend["spec"]["connectionDraining"]["drainingTimeoutSec"]
    pod = _gateway_objects()["Deployment"]["spec"]["template"]["spec"]
    [envoy] = pod["containers"]
    wait = envoy.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    assert wait > draining, f"preStop waits {wait}s, the load balancer drains for {draining}s"
    assert pod.get("terminationGracePeriodSeconds", 30) > wait, "the grace period must cover the preStop wait"


def test_gateway_disruption_budget_lets_node_drains_evict_unready_pods() -> None:
    pdb = _gateway_objects()["PodDisruptionBudget"]["spec"]
    assert pdb.get("unhealthyPodEvictionPolicy") == "AlwaysAllow"


# -- one fact, one value: the same version floor or version is never stated two ways ----------------


def _output_release(text: str) -> list[str]:
    """The flytekit release a sentence gives for showing a failing proxy command's output."""
    stated = []
    paragraphs = re.split(r"\n\s*\n|\n(?=#)", text)
    sentences = [s for p in paragraphs for s in re.split(r"(?<=[A-Za-z)`])[.!?]\s+|\|", " ".join(p.split()))]
    for sentence in sentences:
        if "output" in sentence and "command" in sentence:
            versions = re.findall(r"\b1\.1\d\.\d+\b", sentence)
            if versions:
                stated.append(min(versions, key=lambda v: tuple(int(n) for n in v.split("."))))
    return stated


def _pattern(regex: str) -> Callable[[str], list[str]]:
    return lambda text: [next(g for g in m.groups() if g) for m in re.finditer(regex, " ".join(text.split()))]


#: (what, how to find the value each statement gives, the value)
_FACTS = [
    ("flytekit release that shows a failing proxy command's output", _output_release, "1.16.21"),
    (
        "grpcio floor",
        _pattern(r"grpcio(?: older than| before|>=|\" >= ?)\s*(\d+\.\d+)|grpcio (\d+\.\d+) or later"),
        "1.62",
    ),
    (
        "flytectl floor",
        _pattern(r"flytectl (?:older than|before) (\d+\.\d+\.\d+)|flytectl \((\d+\.\d+\.\d+) and later"),
        "0.8.18",
    ),
    (
        "flytekit floor for proxyCommand",
        _pattern(r"first appeared in flytekit (\d+\.\d+)(?:\.0)?\b|flytekit \((\d+\.\d+)(?:\.0)? and later"),
        "1.10",
    ),
    (
        "Flyte 1 chart version",
        _pattern(r"flyteorg/flyte-(?:binary|core) --version (v(?!2\.)[\d.]+)"),
        "v1.16.8",
    ),
    ("Flyte 2 chart version", _pattern(r"flyteorg/flyte-binary --version (v2\.[\d.]+)"), "v2.0.43"),
]


@pytest.mark.parametrize(("what", "find", "value"), _FACTS, ids=[f[0] for f in _FACTS])
def test_a_fact_is_stated_with_one_value_everywhere(
    what: str, find: Callable[[str], list[str]], value: str
) -> None:
    found: dict[str, set[str]] = {}
    for path in [*_guide_files(), Path(__file__).parent / "deploy" / "oauth-clients.md"]:
        for stated in find(path.read_text()):
            found.setdefault(stated, set()).add(path.name)
    assert found, f"no page states the {what}: check the pattern"
    assert set(found) == {value}, f"the {what} is stated as {found}"


def test_flyteadmin_token_request_issue_names_its_cause_and_no_affected_workaround() -> None:
    """flyteorg/flyte#6089: the token sources lose the proxy-aware client (flyte#5686), for PKCE and ClientSecret."""
    pages = {p.name: " ".join(p.read_text().split()) for p in _guide_files()}
    issue = pages["known-issues.md"]
    assert "flyteorg/flyte#5686" in issue and "getTokenSourceAndMetadata" in issue
    assert "ClientSecret" in issue and "affected the same way" in issue
    for name, text in pages.items():
        assert "c.Exchange(context.Background()" not in text, (
            f"{name}: the PKCE callback uses the client it is given"
        )
        assert not re.search(r"Run flytectl with `authType: ClientSecret`", text), (
            f"{name}: flytectl's ClientSecret token request loses the proxy header too"
        )


@pytest.mark.skipif(not available("gcloud"), reason="gcloud is not installed")
def test_gcloud_flag_shown_with_its_default_is_known(sandbox: DocSandbox) -> None:
    """gcloud prints some flags as `--network=NETWORK; default="default"`."""
    run(
        sandbox,
        "$ gcloud compute firewall-rules create fw --network=default --rules=tcp:8443 --action=ALLOW\n",
    )


# -- Workload Identity: every Google service account the values name is created and bound ----------

#: Kubernetes service accounts that carry the annotation, by chart (names as the charts render them:
#: flyteorg/flyte@v1.16.8:charts/flyte-binary/templates/_helpers.tpl serviceAccountName = fullname of
#: the release flyte-backend; charts/flyte-core/templates/_helpers.tpl flyteadmin.name, ...), and the
#: project-domain namespaces whose `default` account the cluster resource templates annotate.
_KSAS = {
    "flyte-binary": {"flyte/flyte-backend-flyte-binary": "serviceAccount"},
    "flyte-core": {f"flyte/{c}": c for c in ("flyteadmin", "datacatalog", "flytepropeller")},
}
_TASK_NAMESPACES = [f"flytesnacks-{d}" for d in ("development", "staging", "production")]


def _commands(page: Path) -> list[str]:
    text = re.sub(r"\\\n\s*", " ", page.read_text())
    return [line[2:] for line in text.splitlines() if line.startswith("$ ")]


@pytest.mark.parametrize("chart", sorted(_KSAS))
def test_every_workload_identity_annotation_has_its_account_and_binding(chart: str) -> None:
    values = yaml.safe_load((EXAMPLES / "helm" / chart / "values-gke-iap.yaml").read_text())
    text = (EXAMPLES / "helm" / chart / "values-gke-iap.yaml").read_text()
    commands = _commands(Path(__file__).parent / "deploy" / "project-setup.md")
    created = {m for c in commands for m in re.findall(r"^gcloud iam service-accounts create (\S+)", c)}
    bindings = {
        (gsa, ksa)
        for c in commands
        if "roles/iam.workloadIdentityUser" in c
        for gsa, ksa in re.findall(r"add-iam-policy-binding (\S+?)@.*svc\.id\.goog\[([^\]]+)\]", c)
    }
    # the component accounts the values annotate
    wanted = []
    for ksa, key in _KSAS[chart].items():
        section = values[key] if key == "serviceAccount" else values[key]["serviceAccount"]
        wanted.append((section["annotations"]["iam.gke.io/gcp-service-account"], ksa))
    # the task pods' account, from the cluster resource templates
    [task_gsa] = set(re.findall(r"iam\.gke\.io/gcp-service-account: (\S+)", text)) - {g for g, _ in wanted}
    wanted += [(task_gsa, f"{ns}/default") for ns in _TASK_NAMESPACES]
    for gsa, ksa in wanted:
        name = gsa.split("@")[0]
        assert name in created, f"{gsa} is never created on project-setup.md"
        assert (name, ksa) in bindings, f"no roles/iam.workloadIdentityUser for {ksa} on {gsa}"


def test_flyte2_backend_account_is_created_bound_and_given_the_bucket_on_its_page() -> None:
    """The Flyte 2 page must create the Google service account its values name and bind the chart's KSA."""
    page = Path(__file__).parent / "flyte2" / "gke.md"
    values = yaml.safe_load((EXAMPLES / "helm" / "flyte-binary-v2" / "values-gke-iap.yaml").read_text())
    gsa = values["serviceAccount"]["annotations"]["iam.gke.io/gcp-service-account"]
    commands = _commands(page)
    [release] = {m for c in commands for m in re.findall(r"^helm install (\S+) flyteorg/flyte-binary ", c)}
    # flyteorg/flyte@v2.0.43:charts/flyte-binary/templates/_helpers.tpl: serviceAccountName = fullname
    ksa = f"flyte/{release}-flyte-binary"
    name = gsa.split("@")[0]
    assert f"gcloud iam service-accounts create {name} " in "\n".join(commands), f"{gsa} is never created"
    bindings = {
        (g, k)
        for c in commands
        if "roles/iam.workloadIdentityUser" in c
        for g, k in re.findall(r"add-iam-policy-binding (\S+?)@.*svc\.id\.goog\[([^\]]+)\]", c)
    }
    assert (name, ksa) in bindings, f"no roles/iam.workloadIdentityUser for {ksa} on {gsa}"
    for role in ("roles/storage.objectAdmin", "roles/storage.legacyBucketReader"):
        assert any(f"--member=serviceAccount:{gsa}" in c and f"--role={role}" in c for c in commands), role


def test_workload_identity_members_are_quoted_so_no_shell_globs_the_brackets() -> None:
    """zsh refuses an unquoted `[ns/ksa]` ("no matches found"); bash expands it if a file matches."""
    unquoted = [
        (page.name, c)
        for page in Path(__file__).parent.rglob("*.md")
        if "_build" not in page.parts
        for c in _commands(page)
        for member in re.findall(r"--member=(\S*svc\.id\.goog\[)", c)
        if not member.startswith(("'", '"'))
    ]
    assert not unquoted, unquoted


def test_the_static_ip_is_reserved_with_one_command_on_every_page() -> None:
    found = {
        " ".join(c.split())
        for page in Path(__file__).parent.rglob("*.md")
        if "_build" not in page.parts
        for c in _commands(page)
        if c.startswith("gcloud compute addresses create")
    }
    assert found == {
        "gcloud compute addresses create flyte-ip --global --ip-version=IPV4 --project=my-project"
    }


@pytest.mark.skipif(not available("gcloud"), reason="gcloud is not installed")
def test_gcloud_resource_argument_flags_are_known(sandbox: DocSandbox) -> None:
    """`--location` of `gcloud iam workload-identity-pools create` is listed under POSITIONAL ARGUMENTS."""
    run(
        sandbox, "$ gcloud iam workload-identity-pools create github --location=global --project=my-project\n"
    )
    with pytest.raises(BlockFailure, match="has no flag --locaton"):
        run(sandbox, "$ gcloud iam workload-identity-pools create github --locaton=global\n")


@pytest.mark.parametrize("chart", ["flyte-binary", "flyte-core"])
def test_no_request_falls_through_to_gkes_default_backend(chart: str) -> None:
    """GKE's default-http-backend has no IAP: the Ingress must route "/" itself."""
    [ingress] = [
        d
        for d in yaml.safe_load_all((EXAMPLES / "gke" / chart / "ingress.yaml").read_text())
        if d and d["kind"] == "Ingress"
    ]
    paths = [p["path"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]]
    assert "defaultBackend" in ingress["spec"] or "/" in paths


# -- "All commands in order": all of them, from the step pages, in an order that works --------------


def _all_commands_tabs() -> dict[str, list[str]]:
    text = (Path(__file__).parent / "deploy" / "index.md").read_text()
    section = text[text.index("## All commands in order") :]
    tabs = {}
    for chart in ("flyte-binary", "flyte-core"):
        body = section[section.index(f":::{{tab-item}} {chart}") :]
        body = body[: body.index("\n:::\n")]
        joined = re.sub(r"\\\n\s*", " ", body)
        tabs[chart] = [" ".join(line[2:].split()) for line in joined.splitlines() if line.startswith("$ ")]
    return tabs


def _step_commands() -> set[str]:
    pages = [p for p in (Path(__file__).parent / "deploy").glob("*.md") if p.name != "index.md"]
    commands = set()
    for page in pages:
        joined = re.sub(r"\\\n\s*", " ", page.read_text())
        commands |= {" ".join(line[2:].split()) for line in joined.splitlines() if line.startswith("$ ")}
    return commands


@pytest.mark.parametrize("chart", ["flyte-binary", "flyte-core"])
def test_all_commands_in_order_are_the_step_pages_commands_in_a_working_order(chart: str) -> None:
    commands = _all_commands_tabs()[chart]
    steps = _step_commands()
    missing = [c for c in commands if c not in steps]
    assert not missing, f"not on any step page (the list must repeat the steps, not differ): {missing}"

    def first(fragment: str) -> int:
        found = [i for i, c in enumerate(commands) if fragment in c]
        assert found, f"the {chart} list has no command with {fragment!r}"
        return found[0]

    tls = "flyte-gateway-tls" if chart == "flyte-binary" else "flyteadmin-tls"
    order = [
        "gcloud services enable",
        "gcloud compute addresses create",
        "gcloud dns record-sets create",
        "kubectl create namespace flyte",
        "openssl req",
        f"create secret tls {tls}",
        "create secret generic flyte-iap-oauth",
        "create secret generic flyte-db-password",
        "helm repo add",
        f"helm install flyte{'-backend' if chart == 'flyte-binary' else ''} flyteorg/{chart}",
        f"kubectl apply --filename=examples/gke/{chart}/",
    ]
    positions = [first(f) for f in order]
    assert positions == sorted(positions), dict(zip(order, positions, strict=True))
    assert first("roles/iam.workloadIdentityUser") < first("helm install")


def _console_commands(text: str) -> list[str]:
    joined = re.sub(r"\\\n\s*", " ", text)
    return [" ".join(line[2:].split()) for line in joined.splitlines() if line.startswith("$ ")]


def test_flyte2_all_commands_in_order_are_its_steps_commands_in_a_working_order() -> None:
    """docs/flyte2/gke.md ends with every command of its steps and of the Flyte 1 steps it relies on."""
    text = (Path(__file__).parent / "flyte2" / "gke.md").read_text()
    cut = text.index("## All commands in order")
    steps, commands = _console_commands(text[:cut]), _console_commands(text[cut:])
    missing = [c for c in commands if c not in set(steps) | _step_commands()]
    assert not missing, f"not on any step page (the list must repeat the steps, not differ): {missing}"
    left_out = [c for c in steps if c not in commands]
    assert not left_out, f"steps of gke.md missing from its list: {left_out}"

    def first(fragment: str) -> int:
        found = [i for i, c in enumerate(commands) if fragment in c]
        assert found, f"the Flyte 2 list has no command with {fragment!r}"
        return found[0]

    order = [
        "gcloud services enable",
        "gcloud compute addresses create",
        "gcloud dns record-sets create",
        "kubectl create namespace flyte",
        "create secret generic flyte-iap-oauth",
        "create secret generic flyte-db-password",
        "helm repo add",
        "helm install flyte flyteorg/flyte-binary --version v2.0.43",
        "kubectl apply -f examples/gke/flyte2/",
        "gcloud iap web add-iam-policy-binding",
    ]
    positions = [first(f) for f in order]
    assert positions == sorted(positions), dict(zip(order, positions, strict=True))
    helm = first("helm install")
    bound = [i for i, c in enumerate(commands) if "roles/iam.workloadIdentityUser" in c]
    assert len(bound) == 2 and max(bound) < helm, "both Workload Identity bindings come before the chart"
    assert "flyte-tasks" in commands[bound[1]] or "flyte-tasks" in commands[bound[0]]


@pytest.mark.skipif(not available("gcloud"), reason="gcloud is not installed")
def test_gcloud_flag_given_twice_fails_unless_its_help_says_it_repeats(sandbox: DocSandbox) -> None:
    """`add-iam-policy-binding --member=A --member=B` binds only B."""
    with pytest.raises(BlockFailure, match="--member is given 2 times"):
        run(
            sandbox,
            "$ gcloud storage buckets add-iam-policy-binding gs://b --member=user:a@example.com "
            "--member=user:b@example.com --role=roles/storage.objectViewer\n",
        )


# -- Flyte 2 and the Gateway API: the steps a reader needs are on the pages -------------------------


def _pages() -> list[Path]:
    return [p for p in Path(__file__).parent.rglob("*.md") if "_build" not in p.parts]


def test_a_sentence_about_the_flyte_sdk_never_sends_the_reader_to_the_flytekit_client_page() -> None:
    """The flyte SDK reads other keys than flytekit: its setup is /flyte2/client, not /client/config."""
    wrong = [
        (page.name, sentence)
        for page in _pages()
        for sentence in re.split(r"(?<=[.!?])\s+", " ".join(page.read_text().split()))
        if re.search(r"Flyte 2 SDK|the `flyte` SDK", sentence) and "client/config" in sentence
    ]
    assert not wrong, wrong


def test_a_page_that_uses_certificate_manager_enables_its_api() -> None:
    for page in _pages():
        commands = _commands(page)
        if any(c.startswith("gcloud certificate-manager ") for c in commands):
            enabled = [c for c in commands if c.startswith("gcloud services enable ")]
            assert any("certificatemanager.googleapis.com" in c for c in enabled), page.name
            first = min(i for i, c in enumerate(commands) if c.startswith("gcloud certificate-manager "))
            assert any("certificatemanager" in c for c in commands[:first]), f"{page.name}: enabled too late"


def test_the_gateway_page_for_flyte2_is_reachable_from_the_flyte2_path() -> None:
    gateway = (Path(__file__).parent / "deploy" / "gateway-api.md").read_text()
    assert "Flyte 2" in gateway
    assert "/deploy/gateway-api" in (Path(__file__).parent / "flyte2" / "gke.md").read_text()


def test_migrating_warns_when_flyte2_manifests_reuse_the_names_of_flyte1_objects() -> None:
    def objects(directory: str) -> set[tuple[str, str, str]]:
        found = set()
        for path in (EXAMPLES / "gke" / directory).glob("*.yaml"):
            for doc in yaml.safe_load_all(path.read_text()):
                if doc:
                    found.add((doc["kind"], doc["metadata"].get("namespace", ""), doc["metadata"]["name"]))
        return found

    shared = objects("flyte2") & (objects("flyte-binary") | objects("flyte-core"))
    page = " ".join((Path(__file__).parent / "flyte2" / "migrating.md").read_text().split())
    if shared:
        assert "replace its Ingress" in page, f"the Flyte 2 manifests reuse {sorted(shared)}"


def test_the_flyte2_page_names_the_flyte1_steps_it_relies_on_with_its_own_ports() -> None:
    page = " ".join((Path(__file__).parent / "flyte2" / "gke.md").read_text().split())
    for needed in (
        "/deploy/project-setup",
        "flyte-db-password",
        "flyte-iap-oauth",
        "roles/iap.httpsResourceAccessor",
    ):
        assert needed in page, needed
    # the health-check firewall rule must admit the pods' ports of Flyte 2, not those of Flyte 1
    values = (EXAMPLES / "gke" / "flyte2" / "backend-config.yaml").read_text()
    ports = sorted(set(re.findall(r"^\s+port: (\d+)", values, re.MULTILINE)))
    assert f"--rules={','.join(f'tcp:{p}' for p in sorted(ports, reverse=True))}" in page, ports


def test_the_ingress_page_says_where_unlisted_paths_go_as_the_flyte_core_ingress_does() -> None:
    [ingress] = [
        d
        for d in yaml.safe_load_all((EXAMPLES / "gke" / "flyte-core" / "ingress.yaml").read_text())
        if d and d["kind"] == "Ingress"
    ]
    default = ingress["spec"]["defaultBackend"]["service"]["name"]
    page = " ".join((Path(__file__).parent / "deploy" / "ingress.md").read_text().split())
    for sentence in re.split(r"(?<=[.;])\s+", page):
        if re.search(r"(?i)\b(everything|any other path)\b", sentence) and "flyteadmin" in sentence:
            raise AssertionError(f"unlisted paths go to {default}, the page says: {sentence}")


@pytest.mark.parametrize("chart", ["flyte-binary", "flyte-core", "flyte-binary-v2"])
def test_every_ingress_backend_asks_for_network_endpoint_groups(chart: str) -> None:
    """The BackendConfigs health-check the pods' ports: container-native load balancing, asked for, not assumed.

    GKE makes it the default only under conditions (VPC-native, version, no Shared VPC ...); a ClusterIP
    Service without it cannot back a GCE Ingress at all.
    """
    from _harness.manifests import DEPLOYMENTS, GKE_DIRS

    release, values_file = DEPLOYMENTS[chart]
    values = yaml.safe_load((EXAMPLES / "helm" / chart / values_file).read_text())
    docs = [
        d
        for p in (EXAMPLES / "gke" / GKE_DIRS.get(chart, chart)).glob("*.yaml")
        for d in yaml.safe_load_all(p.read_text())
        if d
    ]
    services = {s["metadata"]["name"]: s for s in chart_services(chart, release, values)}
    services |= {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    backends = set()
    for ingress in (d for d in docs if d["kind"] == "Ingress"):
        if "defaultBackend" in ingress["spec"]:
            backends.add(ingress["spec"]["defaultBackend"]["service"]["name"])
        backends |= {
            p["backend"]["service"]["name"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]
        }
    assert backends
    for name in backends:
        neg = services[name]["metadata"].get("annotations", {}).get("cloud.google.com/neg", "{}")
        assert yaml.safe_load(neg).get("ingress") is True, f"{chart}: Service {name} has no NEG annotation"


def test_the_gateway_page_installs_flyte2_with_the_identity_headers_of_the_ingress_path() -> None:
    """Without runs.identityHeaders the backend trusts X-Amzn-Oidc-* headers a client sends through IAP."""
    values = yaml.safe_load((EXAMPLES / "helm" / "flyte-binary-v2" / "values-gke-iap.yaml").read_text())
    headers = values["flyte-core-components"]["runs"]["identityHeaders"]
    assert headers["claimsJwtHeader"].lower() == "x-goog-iap-jwt-assertion" and headers["subjectHeader"] == ""
    page = (Path(__file__).parent / "deploy" / "gateway-api.md").read_text()
    assert "examples/helm/flyte-binary-v2/values-gke-iap.yaml" in page and "identityHeaders" in page


def test_the_flyte1_guide_sends_flyte2_readers_to_the_flyte2_path() -> None:
    text = (Path(__file__).parent / "deploy" / "index.md").read_text()
    section = text[text.index("## Flyte 1, pinned") : text.index("## All commands in order")]
    assert "../flyte2/index.md" in section or "{doc}`/flyte2/index`" in section


def test_flyte2_task_pods_account_exists_in_the_actions_namespace_and_is_bound_on_the_page() -> None:
    """Task pods run in actions.kubernetes.namespace as executor.defaultK8sServiceAccount
    (flyteorg/flyte@v2.0.43:executor/pkg/plugin/task_exec_metadata.go, actions/k8s/client.go): that
    account must be a manifest the page applies, annotated with a Google service account the page
    creates, binds to exactly that namespace/name, and gives the bucket's objects."""
    values = yaml.safe_load((EXAMPLES / "helm" / "flyte-binary-v2" / "values-gke-iap.yaml").read_text())
    namespace = values["flyte-core-components"]["actions"]["kubernetes"]["namespace"]
    ksa = values["configuration"]["inline"]["executor"]["defaultK8sServiceAccount"]
    assert ksa and ksa != "default", "task pods would share the namespace's default account"
    accounts = {
        (d["metadata"].get("namespace"), d["metadata"]["name"]): d
        for p in (EXAMPLES / "gke" / "flyte2").glob("*.yaml")
        for d in yaml.safe_load_all(p.read_text())
        if d and d["kind"] == "ServiceAccount"
    }
    assert (namespace, ksa) in accounts, f"no ServiceAccount {namespace}/{ksa} in examples/gke/flyte2/"
    gsa = accounts[(namespace, ksa)]["metadata"]["annotations"]["iam.gke.io/gcp-service-account"]
    backend = values["serviceAccount"]["annotations"]["iam.gke.io/gcp-service-account"]
    assert gsa != backend, "task pods must not act as the backend's Google service account"
    page = Path(__file__).parent / "flyte2" / "gke.md"
    commands = _commands(page)
    name = gsa.split("@")[0]
    assert any(c.startswith(f"gcloud iam service-accounts create {name} ") for c in commands), gsa
    bindings = {
        (g, k)
        for c in commands
        if "roles/iam.workloadIdentityUser" in c
        for g, k in re.findall(r"add-iam-policy-binding (\S+?)@.*svc\.id\.goog\[([^\]]+)\]", c)
    }
    assert (name, f"{namespace}/{ksa}") in bindings, bindings
    assert any(
        f"--member=serviceAccount:{gsa}" in c and "--role=roles/storage.objectAdmin" in c for c in commands
    )
    assert "examples/gke/flyte2/task-service-account.yaml" in page.read_text()


def test_the_gateway_page_cites_google_for_its_claims_and_names_the_controller_requirements() -> None:
    """Gateway API claims are Google's words with a link; the add-on and the Shared VPC role are listed."""
    page = " ".join((Path(__file__).parent / "deploy" / "gateway-api.md").read_text().split())
    assert "Google recommends" not in page and "1.34.1-gke.1822000" not in page
    assert "cloud.google.com/kubernetes-engine/docs/concepts/gateway-api" in page
    requirements = "cloud.google.com/kubernetes-engine/docs/how-to/configure-gateway-resources"
    assert requirements in page
    after = page[page.index(requirements) :]
    assert "--update-addons=HttpLoadBalancing=ENABLED" in after
    assert "roles/compute.networkUser" in after and "Shared VPC" in after
