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


# -- links from the code to the guide -------------------------------------------------------------

#: How the code and the examples spell a link to a page of the guide.
_DOCS_LINKS = (
    re.compile(r"\{DOCS_URL\}/([\w./#-]+)"),  # f"{DOCS_URL}/client/config.html"
    re.compile(r"\b_doc\(\s*\"([\w./#-]+)\"\s*\)"),  # doctor's _doc("deploy/ingress.html")
    re.compile(r"https://flyte-iap\.readthedocs\.io/en/latest/([\w./#-]+)"),
)


def _guide_links() -> list[tuple[str, str]]:
    """``(where, page)`` for every link to the guide in flyte_iap/ and examples/, and each check rule's."""
    from flyte_iap import DOCS_URL
    from flyte_iap.manifest_check import RULES

    found = []
    roots = [DOCS.parent / "flyte_iap", EXAMPLES]
    for path in sorted(p for root in roots for p in root.rglob("*") if p.is_file()):
        if path.suffix not in (".py", ".yaml", ".yml", ".md", ".sh", ".json", ".toml"):
            continue
        text = path.read_text(errors="replace")
        for pattern in _DOCS_LINKS:
            for match in pattern.finditer(text):
                line = text.count("\n", 0, match.start()) + 1
                found.append((f"{path.relative_to(DOCS.parent)}:{line}", match.group(1)))
    for rule_id, rule in RULES.items():
        found.append((f"rule {rule_id}", rule.url.removeprefix(DOCS_URL + "/")))
    return found


def _page_source(page: str):
    """The docs/ source of a built page (``deploy/ingress.html#anchor`` -> docs/deploy/ingress.md)."""
    name = page.split("#", 1)[0].rstrip("/")
    if not name.endswith(".html"):
        return None
    source = DOCS / (name.removesuffix(".html") + ".md")
    excluded = (
        any(part.startswith("_") for part in source.relative_to(DOCS).parts) or source.name == "README.md"
    )
    return source if source.is_file() and not excluded else None


def test_code_links_to_the_guide_are_found() -> None:
    """The scan is not vacuous: doctor's, the config header's and the check rules' links are all seen."""
    wheres = {where.split(":")[0] for where, _ in _guide_links()}
    assert {"flyte_iap/doctor.py", "flyte_iap/client_config.py", "flyte_iap/service_account.py"} <= wheres
    assert any(w.startswith("rule ") for w in wheres)


def test_every_link_from_the_code_to_the_guide_is_a_page_of_the_site() -> None:
    broken = [f"{where}: {page}" for where, page in _guide_links() if _page_source(page) is None]
    assert broken == []


def test_a_link_to_a_page_that_does_not_exist_is_caught() -> None:
    assert _page_source("deploy/ingress.html#anchor") is not None
    assert _page_source("deploy/no-such-page.html") is None
    assert _page_source("README.html") is None
    assert _page_source("_harness/shell.html") is None


# -- how to install flyte-iap ---------------------------------------------------------------------

_INSTALL = re.compile(r"\bpip[x3]? install ([^`\n]*)")


def _index_installs_of_this_project(text: str) -> list[str]:
    """``pip install`` arguments in ``text`` that ask a package index for flyte-iap (which is on none)."""
    import shlex

    from packaging.requirements import InvalidRequirement, Requirement

    found = []
    for match in _INSTALL.finditer(text):
        # the arguments end where prose or another command starts
        words = re.split(r"\(|;|&&|\|\||\||#", match.group(1))[0]
        try:
            args = shlex.split(words)
        except ValueError:
            args = words.split()
        for arg in args:
            if arg.startswith("-") or "/" in arg or arg.endswith(".whl") or arg.startswith("."):
                continue
            try:
                name = Requirement(arg.strip("'\",;:()")).name
            except InvalidRequirement:
                continue
            if re.sub(r"[-_.]+", "-", name).lower() == "flyte-iap":
                found.append(arg)
    return found


def test_no_page_readme_or_hint_installs_flyte_iap_from_a_package_index() -> None:
    repo = DOCS.parent
    sources = [
        repo / "README.md",
        *DOCS.rglob("*.md"),
        *(repo / "flyte_iap").rglob("*.py"),
        *EXAMPLES.rglob("*"),
    ]
    offenders = [
        f"{path.relative_to(repo)}: pip install {arg}"
        for path in sources
        if path.is_file() and "_build" not in path.parts and path.name != "install.md"
        for arg in _index_installs_of_this_project(path.read_text(errors="replace"))
    ]
    assert offenders == []


def test_index_installs_are_told_from_local_ones() -> None:
    assert _index_installs_of_this_project("`pip install 'flyte-iap[keyring]'`") == ["flyte-iap[keyring]"]
    assert _index_installs_of_this_project('pip install "flytekit>=1.13" flyte-iap\n') == ["flyte-iap"]
    assert (
        _index_installs_of_this_project("pip install ./flyte-iap 'dist/flyte_iap-1-py3-none-any.whl'") == []
    )
    assert _index_installs_of_this_project("pipx inject flyte-iap keyring") == []


# -- the try-it-locally page, as a reader copies it -------------------------------------------------


def _fenced(text: str, info: str) -> list[str]:
    return re.findall(r"^```" + re.escape(info) + r"[ \t]*\n(.*?)^```[ \t]*$", text, re.MULTILINE | re.DOTALL)


def test_try_it_locally_has_a_terminal_walkthrough_that_the_doc_tests_run_whole() -> None:
    text = (DOCS / "try-it-locally.md").read_text()
    sessions = _fenced(text, "console session")
    assert len(sessions) == 1
    assert "$ python -m flyte_iap.testing serve --flyteadmin" in sessions[0]


def test_try_it_locally_cells_are_plain_python_without_shell_escapes() -> None:
    cells = _fenced((DOCS / "try-it-locally.md").read_text(), "{code-cell} ipython3")
    assert cells
    escapes = [line for cell in cells for line in cell.splitlines() if line.lstrip().startswith(("!", "%"))]
    assert escapes == []


def test_a_try_it_page_with_shell_escapes_does_not_say_its_cells_run_in_plain_python() -> None:
    text = (DOCS / "flyte2" / "try-it-locally.md").read_text()
    cells = _fenced(text, "{code-cell} ipython3")
    if any(line.startswith("!") for cell in cells for line in cell.splitlines()):
        assert "into Python or" not in " ".join(text.split())
        assert "IPython" in text


@pytest.mark.parametrize("page", ["try-it-locally.md", "flyte2/try-it-locally.md"])
def test_try_it_locally_never_puts_the_client_secret_on_a_command_line(page: str) -> None:
    text = (DOCS / page).read_text()
    # a secret on the command line shows in `ps` and in shell history: the page uses FLYTE_IAP_CLIENT_SECRET
    assert re.findall(r"--client-secret\b(?!-)|\"--client-secret\"", text) == []
    assert "FLYTE_IAP_CLIENT_SECRET" in text


# -- the home page ----------------------------------------------------------------------------------


def test_the_home_page_does_not_repeat_the_sidebar() -> None:
    """Its toctrees feed the navigation only (:hidden:); the page itself says where to start."""
    text = (DOCS / "index.md").read_text()
    toctrees = re.findall(r"```\{toctree\}\n(.*?)```", text, re.DOTALL)
    assert toctrees
    assert [t for t in toctrees if not re.search(r"^:hidden:\s*$", t, re.MULTILINE)] == []


def test_wide_code_blocks_wrap_at_laptop_width() -> None:
    """The built site wraps code lines (nox -s browser checks the result at 1280 px in Chromium)."""
    css = (DOCS / "_static" / "custom.css").read_text()
    assert re.search(r"\.highlight pre\s*\{[^}]*white-space:\s*pre-wrap", css)


# -- the release workflow ---------------------------------------------------------------------------


def test_release_workflow_builds_with_nox_and_publishes_with_trusted_publishing() -> None:
    import yaml
    from _harness.workflows import validate_github_workflow

    repo = DOCS.parent
    text = (repo / ".github" / "workflows" / "release.yml").read_text()
    workflow = yaml.safe_load(text)
    assert validate_github_workflow(workflow, repo) == []
    jobs = workflow["jobs"]
    assert any("nox -s package" in str(step.get("run", "")) for step in jobs["build"]["steps"])
    publish = jobs["publish"]
    assert set(publish["needs"]) == {"ci", "build"}
    assert publish["permissions"] == {"id-token": "write"}  # OIDC for trusted publishing, nothing else
    [step] = [
        s for s in publish["steps"] if str(s.get("uses", "")).startswith("pypa/gh-action-pypi-publish@")
    ]
    assert "with" not in step  # no repository-url, no password: the default index, by trusted publishing
    assert "://" not in text.split("jobs:", 1)[1]  # no host is named: the action knows its index
    assert "nox -s package" in (repo / ".ci" / "run").read_text()
