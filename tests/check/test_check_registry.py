"""The rule registry and the rule list the docs reference page renders from it."""

from __future__ import annotations

import re

import pytest

from flyte_iap import DOCS_URL
from flyte_iap.manifest_check import RULES, rules_markdown

# The guide's pages (docs/), as the project's brief lists them.
GUIDE_PAGES = {
    "deploy/index",
    "deploy/static-ip-dns",
    "deploy/certificate",
    "deploy/ingress",
    "deploy/grpc-backend",
    "deploy/backendconfig",
    "deploy/oauth-clients",
    "deploy/helm-values",
    "troubleshooting",
    "deploy/gateway-api",
}


def test_rule_ids_names_and_severities_are_well_formed_and_unique() -> None:
    assert all(re.fullmatch(r"IAP\d{3}", rule_id) for rule_id in RULES)
    names = [r.name for r in RULES.values()]
    assert len(names) == len(set(names))
    assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", n) for n in names)
    assert {r.severity for r in RULES.values()} <= {"error", "warning"}


@pytest.mark.parametrize("rule_id", sorted(RULES))
def test_rule_is_documented_and_links_to_a_guide_page(rule_id: str) -> None:
    rule = RULES[rule_id]
    assert rule.page in GUIDE_PAGES
    assert rule.url == f"{DOCS_URL}/{rule.page}.html"
    assert len(rule.description) > 80
    assert rule.description.endswith((".", ")"))
    assert rule.fix.endswith(".")
    assert "\n" not in rule.description and "  " not in rule.description


def test_markdown_lists_every_rule_with_a_target_heading_and_doc_link() -> None:
    text = rules_markdown()
    for rule_id, rule in RULES.items():
        assert f"({rule_id.lower()})=\n## {rule_id}: {rule.title}\n" in text
        assert f"{{doc}}`/{rule.page}`" in text
    assert text.index("## IAP001") < text.index("## IAP010") < text.index("## IAP050")


def test_markdown_can_use_absolute_links_and_other_heading_levels() -> None:
    text = rules_markdown(heading_level=3, link_style="url")
    assert "\n### IAP001: " in text
    assert f"<{DOCS_URL}/deploy/ingress.html>" in text
    assert "{doc}" not in text


@pytest.mark.parametrize(
    ("options", "message"), [({"link_style": "rst"}, "link_style"), ({"heading_level": 0}, "heading")]
)
def test_markdown_rejects_bad_options(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rules_markdown(**options)  # type: ignore[arg-type]
