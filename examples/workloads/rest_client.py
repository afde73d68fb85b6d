"""List Flyte projects through Identity-Aware Proxy with flyteadmin's REST API, as a service account.

Any process with Google credentials works: a pod with Workload Identity (kubernetes-serviceaccount.yaml),
a VM, Cloud Run, or a CI job after google-github-actions/auth. flyte-iap finds the credentials and
caches the token, so calling this often costs one Google request per hour.

    python rest_client.py https://flyte.example.com 123456789012-iap.apps.googleusercontent.com
"""

from __future__ import annotations

import sys

import requests

import flyte_iap


def list_projects(endpoint: str, audience: str) -> list[str]:
    """The ids of the projects flyteadmin at ``endpoint`` (behind IAP for ``audience``) knows."""
    token = flyte_iap.get_service_account_id_token(audience)
    response = requests.get(
        f"{endpoint.rstrip('/')}/api/v1/projects",
        # IAP checks and strips Proxy-Authorization; Authorization stays free for flyteadmin's own token.
        headers={"Proxy-Authorization": f"Bearer {token}"},
        timeout=30,
    )
    response.raise_for_status()
    return [project["id"] for project in response.json().get("projects", [])]


if __name__ == "__main__":
    endpoint, audience = sys.argv[1:3]
    for project in list_projects(endpoint, audience):
        print(project)
