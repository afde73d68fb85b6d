"""gRPC clients that cannot add headers reach flyteadmin through the local proxy and IAP."""

from __future__ import annotations

import grpc
from flyteidl.admin import project_pb2
from flyteidl.service import admin_pb2_grpc

from flyte_iap.testing import FakeFlyteAdmin, IapProxy


def test_plain_grpc_channel_without_metadata_passes_iap_with_the_users_token(
    local_target: str, tls_iap: IapProxy, admin: FakeFlyteAdmin, signed_in: str
) -> None:
    with grpc.insecure_channel(local_target) as channel:
        projects = admin_pb2_grpc.AdminServiceStub(channel).ListProjects(
            project_pb2.ProjectListRequest(), timeout=20
        )

    assert [p.id for p in projects.projects] == ["flytesnacks"]
    assert tls_iap.rejections == []
    assert [(f.protocol, f.email, f.token_header) for f in tls_iap.forwarded] == [
        ("grpc", signed_in, "proxy-authorization")
    ]
    assert "proxy-authorization" not in admin.grpc_calls[-1].metadata
