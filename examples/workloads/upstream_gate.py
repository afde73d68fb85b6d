"""A Flyte workflow whose task asks Flyte, through Identity-Aware Proxy, whether an upstream run succeeded.

The task runs on GKE as the Kubernetes service account in kubernetes-serviceaccount.yaml; FlyteRemote
reads flyte-config.yaml, whose proxyCommand `flyte-iap sa-token` gets the pod's ID token from the GKE
metadata server (Workload Identity). Register and run it with that account:

    pyflyte run --remote --service-account flyte-launcher examples/workloads/upstream_gate.py gated \\
        --upstream_project ingest --upstream_launch_plan ingest.daily

`pyflyte run --remote` ships flyte-config.yaml with the code (fast registration). The task image must
contain flyte-iap: the ImageSpec below adds it (set ``registry`` to one your cluster pulls from).
"""

from __future__ import annotations

from pathlib import Path

from flytekit import ImageSpec, task, workflow
from flytekit.configuration import Config
from flytekit.models.admin.common import Sort
from flytekit.models.core.execution import WorkflowExecutionPhase
from flytekit.remote import FlyteRemote

CONFIG = Path(__file__).with_name("flyte-config.yaml")

image = ImageSpec(name="flyte-upstream-gate", packages=["flytekit", "flyte-iap"], registry="ghcr.io/my-org")


@task(container_image=image)
def upstream_succeeded(project: str, domain: str, launch_plan: str) -> bool:
    """True when the newest execution of ``launch_plan`` in ``project``/``domain`` succeeded."""
    remote = FlyteRemote(Config.auto(config_file=str(CONFIG)), default_project=project, default_domain=domain)
    newest_first = Sort("created_at", Sort.Direction.DESCENDING)
    executions, _ = remote.client.list_executions_paginated(project, domain, limit=100, sort_by=newest_first)
    for execution in executions:
        if execution.spec.launch_plan.name == launch_plan:
            return execution.closure.phase == WorkflowExecutionPhase.SUCCEEDED
    return False


@workflow
def gated(upstream_project: str = "ingest", upstream_launch_plan: str = "ingest.daily") -> bool:
    return upstream_succeeded(project=upstream_project, domain="production", launch_plan=upstream_launch_plan)
