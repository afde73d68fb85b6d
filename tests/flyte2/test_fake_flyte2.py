"""FakeFlyte2 speaks Connect the way the backend does (flyteorg/flyte@v2.0.43, connect-go)."""

from __future__ import annotations

import gzip
import http.client
import json
import struct
import time

import pytest
from flyteidl2.common import identifier_pb2
from flyteidl2.project import project_service_pb2
from flyteidl2.workflow import run_service_pb2

from flyte_iap.testing import FakeFlyte2


@pytest.fixture
def fake():
    with FakeFlyte2(stream_interval=0.2) as f:
        f.add_run("r-1")
        yield f


def _post(fake, path, body, headers):
    conn = http.client.HTTPConnection(fake.host, fake.port, timeout=10)
    conn.request("POST", path, body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response, data


UNARY = {"content-type": "application/proto", "connect-protocol-version": "1"}


def test_unary_gzip_request_is_decoded_and_answer_is_gzipped_when_accepted(fake):
    request = project_service_pb2.ListProjectsRequest(org="any-org-at-all")
    headers = {**UNARY, "content-encoding": "gzip", "accept-encoding": "gzip"}
    response, data = _post(
        fake,
        "/flyteidl2.project.ProjectService/ListProjects",
        gzip.compress(request.SerializeToString()),
        headers,
    )
    assert response.status == 200
    assert response.getheader("content-encoding") == "gzip"
    answer = project_service_pb2.ListProjectsResponse.FromString(gzip.decompress(data))
    assert [p.id for p in answer.projects.projects] == ["flytesnacks"]
    assert answer.projects.projects[0].org == "any-org-at-all"  # org echoed, never validated
    assert fake.calls[-1].org == "any-org-at-all"


def test_unary_answer_is_plain_without_accept_encoding(fake):
    response, data = _post(fake, "/flyteidl2.project.ProjectService/ListProjects", b"", UNARY)
    assert response.getheader("content-encoding") is None
    assert project_service_pb2.ListProjectsResponse.FromString(data).projects.projects


def test_other_method_of_a_served_service_is_unimplemented_as_connect_json(fake):
    response, data = _post(fake, "/flyteidl2.workflow.RunService/CreateRun", b"", UNARY)
    assert response.status == 501
    assert response.getheader("content-type") == "application/json"
    assert json.loads(data)["code"] == "unimplemented"


def test_unknown_service_is_404_and_unknown_run_is_not_found(fake):
    response, _ = _post(fake, "/nope.Service/Method", b"", UNARY)
    assert response.status == 404
    request = run_service_pb2.GetRunDetailsRequest(run_id=identifier_pb2.RunIdentifier(name="missing"))
    response, data = _post(
        fake, "/flyteidl2.workflow.RunService/GetRunDetails", request.SerializeToString(), UNARY
    )
    assert (response.status, json.loads(data)["code"]) == (404, "not_found")


def test_oversized_and_corrupt_bodies_get_connect_errors_not_crashes(fake):
    fake.max_body = 1000
    bomb = gzip.compress(b"\0" * 100_000)  # small on the wire, large once decompressed
    response, data = _post(
        fake, "/flyteidl2.project.ProjectService/ListProjects", bomb, {**UNARY, "content-encoding": "gzip"}
    )
    assert (response.status, json.loads(data)["code"]) == (429, "resource_exhausted")
    response, data = _post(
        fake,
        "/flyteidl2.project.ProjectService/ListProjects",
        b"not gzip",
        {**UNARY, "content-encoding": "gzip"},
    )
    assert (response.status, json.loads(data)["code"]) == (400, "invalid_argument")
    response, data = _post(fake, "/flyteidl2.project.ProjectService/ListProjects", b"\xff\xff\xff", UNARY)
    assert (response.status, json.loads(data)["code"]) == (400, "invalid_argument")
    response, _ = _post(fake, "/flyteidl2.project.ProjectService/ListProjects", b"", UNARY)
    assert response.status == 200  # still serving


def test_watch_stream_sends_each_phase_as_its_own_chunk_over_time(fake):
    action = identifier_pb2.ActionIdentifier(run=identifier_pb2.RunIdentifier(name="r-1"), name="a0")
    message = run_service_pb2.WatchActionDetailsRequest(action_id=action).SerializeToString()
    body = struct.pack(">BI", 0, len(message)) + message
    conn = http.client.HTTPConnection(fake.host, fake.port, timeout=10)
    conn.request(
        "POST",
        "/flyteidl2.workflow.RunService/WatchActionDetails",
        body=body,
        headers={"content-type": "application/connect+proto", "connect-protocol-version": "1"},
    )
    response = conn.getresponse()
    assert response.getheader("transfer-encoding") == "chunked"
    assert response.getheader("content-length") is None
    arrivals, phases, end = [], [], None
    buffer = b""
    while end is None:
        buffer += response.read1(65536)
        while len(buffer) >= 5:
            flags, length = struct.unpack(">BI", buffer[:5])
            if len(buffer) < 5 + length:
                break
            payload, buffer = buffer[5 : 5 + length], buffer[5 + length :]
            if flags & 2:
                end = json.loads(payload)
            else:
                arrivals.append(time.monotonic())
                phases.append(
                    run_service_pb2.WatchActionDetailsResponse.FromString(payload).details.status.phase
                )
    conn.close()
    assert end == {}
    assert len(phases) == 3 and phases == sorted(phases)
    assert arrivals[-1] - arrivals[0] >= 0.35  # two intervals of 0.2 s apart, not all at once


def test_health_paths_answer_ok(fake):
    conn = http.client.HTTPConnection(fake.host, fake.port, timeout=10)
    conn.request("GET", "/healthz")
    response = conn.getresponse()
    assert (response.status, response.read()) == (200, b"OK")
    conn.close()


def test_identity_is_decoded_unverified_from_the_claims_header(fake):
    import base64

    claims = base64.urlsafe_b64encode(json.dumps({"email": "alice@example.com"}).encode()).rstrip(b"=")
    token = b"e30." + claims + b".sig"
    _post(
        fake,
        "/flyteidl2.project.ProjectService/ListProjects",
        b"",
        {**UNARY, "x-goog-iap-jwt-assertion": token.decode()},
    )
    assert fake.calls[-1].identity == "alice@example.com"
