"""A local flyteadmin: the gRPC services real flytekit calls, plus its HTTP side, recording every header.

Example::

    from flyte_iap.testing import FakeFlyteAdmin

    with FakeFlyteAdmin(auth=True) as admin:  # or .start() / .stop()
        admin.grpc_target  # "127.0.0.1:PORT"   (h2c, flyteidl's generated services)
        admin.http_url  # "http://127.0.0.1:PORT"  (/healthcheck, /oauth2/token, /api/v1/projects)
        admin.public_url = proxy.url  # what the auth metadata advertises (the IAP front door)
        ...
        admin.grpc_calls[-1].method  # "/flyteidl.service.AdminService/ListProjects"
        admin.grpc_calls[-1].metadata  # {"flyte-authorization": "Bearer ...", ...}
        admin.http_requests[-1].headers  # lower-case header names

What it answers, like flyteadmin (``flyteadmin/pkg/server/service.go``):

* ``AdminService``: ``GetVersion``, ``ListProjects``/``GetProject``/``RegisterProject``, ``GetDomains``,
  ``CreateTask``/``GetTask``/``ListTasks``/``ListTaskIds``, ``CreateLaunchPlan``/``GetLaunchPlan``/
  ``ListLaunchPlans``, ``CreateExecution``/``GetExecution``/``ListExecutions``/``TerminateExecution``;
  enough for ``pyflyte info``, ``pyflyte get launchplan``, ``FlyteRemote.register_task`` +
  ``fetch_task`` and ``FlyteRemote.recent_executions``. Everything else is ``UNIMPLEMENTED``.
* ``AuthMetadataService`` (``GetOAuth2Metadata``, ``GetPublicClientConfig``) and ``IdentityService``
  only when ``auth=True``, as flyteadmin registers them only with ``useAuth``. The token endpoint it
  advertises is ``public_url + "/oauth2/token"``: set :attr:`public_url` to the IAP front door so the
  client's token request goes through IAP, as in a real deployment.
* ``DataProxyService.CreateUploadLocation``: a "signed URL" on this server's HTTP port (``PUT``), so
  ``FlyteRemote.upload_file`` works and shows that the data plane bypasses IAP.
* ``grpc.health.v1.Health/Check`` for service ``flyteadmin``: ``SERVING``.
* HTTP: ``GET /healthcheck`` (200), ``POST /oauth2/token`` (``client_credentials``, HTTP Basic or form
  client id/secret), ``GET /config/v1/flyte_client``, ``GET /api/v1/projects``, ``PUT /upload/...``.

Secure mode (``certificate_file=`` and ``key_file=``, flyteadmin's ``server.security.secure: true``
with ``ssl.certificateFile``/``keyFile``) serves both ports with that certificate, HTTPS and gRPC over
TLS, and reproduces what makes flyteadmin's REST API depend on the certificate's names
(flyteorg/flyte@v1.16.8:flyteadmin/pkg/server/service.go, ``serveGatewaySecure``): the REST gateway
reaches the gRPC services by dialling flyteadmin itself over TLS, trusting only the served certificate
(``GetSslCredentials`` in ``cert_utils.go``) and with the TLS server name set to ``cfg.GetHostAddress()``,
which is ``0.0.0.0:<server.httpPort>`` (``flyteadmin/pkg/config/config.go``; 8088 unless configured, see
``server_http_port``). grpc-go keeps a preset server name as it is, port included, and Go's
``VerifyHostname`` then needs a DNS SAN equal to that string (:mod:`flyte_iap.testing._go_x509`). The
fake makes that dial for every ``/api/v1/...`` request; when it fails, the request gets what
grpc-gateway answers for an unreachable backend, ``503`` with ``{"code": 14, "message": "connection
error: ... x509: certificate is valid for ..., not 0.0.0.0:8088"}``, while ``/healthcheck`` (a plain
handler) still answers 200. Real flyteadmin serves both on one port; the fake keeps two, which does not
change what is checked.

With ``auth=True`` every gRPC call except the auth metadata and health services, and every
``/api/...`` request, needs ``Bearer <token from /oauth2/token>`` in ``flyte-authorization`` (the
``authorization_metadata_key`` it advertises) or ``authorization``; otherwise ``UNAUTHENTICATED``
(HTTP 401). Nothing listens beyond 127.0.0.1.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import secrets
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import jwt
from cryptography import x509
from flyteidl.admin import (
    common_pb2,
    execution_pb2,
    launch_plan_pb2,
    project_pb2,
    task_pb2,
    version_pb2,
)
from flyteidl.core import execution_pb2 as core_execution_pb2
from flyteidl.core import identifier_pb2
from flyteidl.service import (
    admin_pb2_grpc,
    auth_pb2,
    auth_pb2_grpc,
    dataproxy_pb2,
    dataproxy_pb2_grpc,
    identity_pb2,
    identity_pb2_grpc,
)
from google.protobuf import timestamp_pb2

from flyte_iap.testing._go_x509 import verify_hostname

__all__ = ["FakeFlyteAdmin", "GrpcCall", "HttpRequest"]

#: flyteadmin's default ``auth.grpcAuthorizationHeader``, advertised as ``authorization_metadata_key``.
AUTHORIZATION_METADATA_KEY = "flyte-authorization"
_HEALTH_CHECK = "/grpc.health.v1.Health/Check"
#: Methods flyteadmin serves without a token: a client must discover how to authenticate.
_NO_AUTH_PREFIXES = ("/flyteidl.service.AuthMetadataService/", "/grpc.health.v1.Health/")
_VERSION = "v1.16.0-fake"


@dataclass(frozen=True)
class GrpcCall:
    """One gRPC call as flyteadmin received it."""

    method: str
    #: invocation metadata, lower-case keys; a key sent twice keeps its last value
    metadata: dict[str, str]
    #: every (key, value) pair in order, for duplicates
    metadata_pairs: tuple[tuple[str, str], ...]
    #: the status code name the fake answered with ("OK", "UNAUTHENTICATED", ...)
    code: str = "OK"


@dataclass(frozen=True)
class HttpRequest:
    """One HTTP request as flyteadmin received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""
    status: int = 200

    def form(self) -> dict[str, str]:
        """The body parsed as ``application/x-www-form-urlencoded``."""
        return dict(urllib.parse.parse_qsl(self.body.decode("utf-8", "replace")))


@dataclass
class _Store:
    projects: dict[str, project_pb2.Project] = field(default_factory=dict)
    tasks: dict[tuple[str, ...], task_pb2.Task] = field(default_factory=dict)
    launch_plans: dict[tuple[str, ...], launch_plan_pb2.LaunchPlan] = field(default_factory=dict)
    executions: dict[tuple[str, ...], execution_pb2.Execution] = field(default_factory=dict)
    uploads: dict[str, bytes] = field(default_factory=dict)


def _now() -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.GetCurrentTime()
    return ts


def _id_key(ident: Any) -> tuple[str, ...]:
    return (ident.project, ident.domain, ident.name, getattr(ident, "version", ""))


def _filters(expression: str) -> list[tuple[str, str, str]]:
    """Parse flyteadmin's filter syntax ``eq(version,abc)+eq(phase,SUCCEEDED)`` into triples."""
    return re.findall(r"(\w+)\(([\w.]+),([^)]*)\)", expression or "")


class _AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    def __init__(self, fake: FakeFlyteAdmin) -> None:
        self._fake = fake

    @property
    def _store(self) -> _Store:
        return self._fake._store

    # -- version, projects, domains ------------------------------------------------------------
    def GetVersion(self, request: Any, context: grpc.ServicerContext) -> Any:
        return version_pb2.GetVersionResponse(
            control_plane_version=version_pb2.Version(Build="fake", Version=_VERSION, BuildTime="")
        )

    def ListProjects(self, request: Any, context: grpc.ServicerContext) -> Any:
        projects = sorted(self._store.projects.values(), key=lambda p: p.id)
        if request.limit:
            projects = projects[: request.limit]
        return project_pb2.Projects(projects=projects)

    def GetProject(self, request: Any, context: grpc.ServicerContext) -> Any:
        project = self._store.projects.get(request.id)
        if project is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"project [{request.id}] not found")
        return project

    def RegisterProject(self, request: Any, context: grpc.ServicerContext) -> Any:
        project = project_pb2.Project()
        project.CopyFrom(request.project)
        if not project.domains:
            project.domains.extend(self._fake._domains())
        self._store.projects[project.id] = project
        return project_pb2.ProjectRegisterResponse()

    def GetDomains(self, request: Any, context: grpc.ServicerContext) -> Any:
        return project_pb2.GetDomainsResponse(domains=self._fake._domains())

    # -- tasks -----------------------------------------------------------------------------------
    def CreateTask(self, request: Any, context: grpc.ServicerContext) -> Any:
        key = _id_key(request.id)
        existing = self._store.tasks.get(key)
        if existing is not None:
            if existing.closure.compiled_task.template == request.spec.template:
                context.abort(grpc.StatusCode.ALREADY_EXISTS, "task with identical structure already exists")
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "task with different structure already exists")
        task = task_pb2.Task(id=request.id, short_description=request.spec.description.short_description)
        task.closure.compiled_task.template.CopyFrom(request.spec.template)
        task.closure.created_at.CopyFrom(_now())
        self._store.tasks[key] = task
        return task_pb2.TaskCreateResponse()

    def GetTask(self, request: Any, context: grpc.ServicerContext) -> Any:
        task = self._store.tasks.get(_id_key(request.id))
        if task is None:
            context.abort(
                grpc.StatusCode.NOT_FOUND, f"missing entity of type TASK with identifier {request.id}"
            )
        return task

    def ListTasks(self, request: Any, context: grpc.ServicerContext) -> Any:
        tasks = self._list(self._store.tasks, request)
        return task_pb2.TaskList(tasks=tasks)

    def ListTaskIds(self, request: Any, context: grpc.ServicerContext) -> Any:
        seen: dict[tuple[str, str, str], common_pb2.NamedEntityIdentifier] = {}
        for task in self._store.tasks.values():
            if (task.id.project, task.id.domain) == (request.project, request.domain):
                seen[(task.id.project, task.id.domain, task.id.name)] = common_pb2.NamedEntityIdentifier(
                    project=task.id.project, domain=task.id.domain, name=task.id.name
                )
        return common_pb2.NamedEntityIdentifierList(entities=list(seen.values()))

    # -- launch plans ----------------------------------------------------------------------------
    def CreateLaunchPlan(self, request: Any, context: grpc.ServicerContext) -> Any:
        key = _id_key(request.id)
        if key in self._store.launch_plans:
            context.abort(
                grpc.StatusCode.ALREADY_EXISTS, "launch plan with identical structure already exists"
            )
        plan = launch_plan_pb2.LaunchPlan(id=request.id, spec=request.spec)
        plan.closure.created_at.CopyFrom(_now())
        plan.closure.state = launch_plan_pb2.INACTIVE
        self._store.launch_plans[key] = plan
        return launch_plan_pb2.LaunchPlanCreateResponse()

    def GetLaunchPlan(self, request: Any, context: grpc.ServicerContext) -> Any:
        plan = self._store.launch_plans.get(_id_key(request.id))
        if plan is None:
            context.abort(
                grpc.StatusCode.NOT_FOUND, f"missing entity of type LAUNCH_PLAN with identifier {request.id}"
            )
        return plan

    def ListLaunchPlans(self, request: Any, context: grpc.ServicerContext) -> Any:
        return launch_plan_pb2.LaunchPlanList(launch_plans=self._list(self._store.launch_plans, request))

    # -- executions ------------------------------------------------------------------------------
    def CreateExecution(self, request: Any, context: grpc.ServicerContext) -> Any:
        name = request.name or "f" + secrets.token_hex(9)[:19]
        ident = identifier_pb2.WorkflowExecutionIdentifier(
            project=request.project, domain=request.domain, name=name
        )
        if _id_key(ident) in self._store.executions:
            context.abort(grpc.StatusCode.ALREADY_EXISTS, f"execution {name} already exists")
        execution = execution_pb2.Execution(id=ident, spec=request.spec)
        execution.closure.phase = core_execution_pb2.WorkflowExecution.QUEUED
        execution.closure.created_at.CopyFrom(_now())
        execution.closure.updated_at.CopyFrom(execution.closure.created_at)
        execution.closure.workflow_id.CopyFrom(request.spec.launch_plan)
        self._store.executions[_id_key(ident)] = execution
        return execution_pb2.ExecutionCreateResponse(id=ident)

    def GetExecution(self, request: Any, context: grpc.ServicerContext) -> Any:
        execution = self._store.executions.get(_id_key(request.id))
        if execution is None:
            context.abort(
                grpc.StatusCode.NOT_FOUND, f"missing entity of type execution with identifier {request.id}"
            )
        return execution

    def ListExecutions(self, request: Any, context: grpc.ServicerContext) -> Any:
        return execution_pb2.ExecutionList(executions=self._list(self._store.executions, request))

    def TerminateExecution(self, request: Any, context: grpc.ServicerContext) -> Any:
        execution = self._store.executions.get(_id_key(request.id))
        if execution is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "execution not found")
        execution.closure.phase = core_execution_pb2.WorkflowExecution.ABORTED
        execution.closure.abort_metadata.cause = request.cause
        return execution_pb2.ExecutionTerminateResponse()

    def _list(self, table: dict[tuple[str, ...], Any], request: Any) -> list[Any]:
        """flyteadmin's list semantics: project/domain(/name) scope, ``eq`` filters, newest first."""
        scope = request.id
        items = [
            item
            for item in table.values()
            if item.id.project == scope.project
            and item.id.domain == scope.domain
            and (not scope.name or item.id.name == scope.name)
        ]
        for op, key, value in _filters(request.filters):
            if op != "eq":
                continue
            if key == "version":
                items = [i for i in items if getattr(i.id, "version", "") == value]
            elif key in ("name", "execution.name"):
                items = [i for i in items if i.id.name == value]
            elif key == "phase":
                items = [
                    i
                    for i in items
                    if core_execution_pb2.WorkflowExecution.Phase.Name(i.closure.phase) == value
                ]
        items.sort(key=lambda i: (i.closure.created_at.seconds, i.closure.created_at.nanos), reverse=True)
        start = int(request.token) if request.token.isdigit() else 0
        limit = request.limit or 100
        return items[start : start + limit]


class _AuthMetadataServicer(auth_pb2_grpc.AuthMetadataServiceServicer):
    def __init__(self, fake: FakeFlyteAdmin) -> None:
        self._fake = fake

    def GetOAuth2Metadata(self, request: Any, context: grpc.ServicerContext) -> Any:
        base = self._fake.public_url
        return auth_pb2.OAuth2MetadataResponse(
            issuer=base,
            authorization_endpoint=base + "/oauth2/authorize",
            token_endpoint=base + "/oauth2/token",
            jwks_uri=base + "/oauth2/jwks",
            response_types_supported=["code", "token", "code token"],
            scopes_supported=["all"],
            token_endpoint_auth_methods_supported=["client_secret_basic"],
            code_challenge_methods_supported=["S256"],
            grant_types_supported=["client_credentials", "refresh_token", "authorization_code"],
        )

    def GetPublicClientConfig(self, request: Any, context: grpc.ServicerContext) -> Any:
        return auth_pb2.PublicClientAuthConfigResponse(
            client_id="flytectl",
            redirect_uri="http://localhost:53593/callback",
            scopes=["offline", "all"],
            authorization_metadata_key=AUTHORIZATION_METADATA_KEY,
            service_http_endpoint=self._fake.public_url,
            audience=self._fake.public_url,
        )


class _IdentityServicer(identity_pb2_grpc.IdentityServiceServicer):
    def __init__(self, fake: FakeFlyteAdmin) -> None:
        self._fake = fake

    def UserInfo(self, request: Any, context: grpc.ServicerContext) -> Any:
        claims = self._fake._claims_from_metadata(dict(context.invocation_metadata())) or {}
        return identity_pb2.UserInfoResponse(
            subject=str(claims.get("sub", "")), name=str(claims.get("sub", ""))
        )


class _DataProxyServicer(dataproxy_pb2_grpc.DataProxyServiceServicer):
    def __init__(self, fake: FakeFlyteAdmin) -> None:
        self._fake = fake

    def CreateUploadLocation(self, request: Any, context: grpc.ServicerContext) -> Any:
        root = request.filename_root or secrets.token_hex(8)
        key = f"{request.project}/{request.domain}/{root}/{request.filename}"
        response = dataproxy_pb2.CreateUploadLocationResponse(
            signed_url=f"{self._fake.http_url}/upload/{urllib.parse.quote(key)}?sig={secrets.token_hex(8)}",
            native_url=f"gs://fake-bucket/{key}",
        )
        response.expires_at.FromSeconds(int(time.time()) + 3600)
        return response


def _encode_health_response(status: int) -> bytes:
    # grpc.health.v1.HealthCheckResponse{status (field 1, enum)}: one varint field, so no dependency
    # on grpcio-health-checking is needed.
    return bytes([0x08, status])


def _decode_health_request(data: bytes) -> str:
    # HealthCheckRequest{service (field 1, string)}; flyteadmin's service name is short.
    if len(data) >= 2 and data[0] == 0x0A:
        return data[2 : 2 + data[1]].decode("utf-8", "replace")
    return ""


class _Recorder(grpc.ServerInterceptor):
    """Records each call's metadata and enforces flyteadmin's token check."""

    def __init__(self, fake: FakeFlyteAdmin) -> None:
        self._fake = fake

    def intercept_service(self, continuation: Callable[..., Any], details: grpc.HandlerCallDetails) -> Any:
        pairs = tuple(
            (k.lower(), v if isinstance(v, str) else v.decode("latin-1"))
            for k, v in details.invocation_metadata
        )
        metadata = dict(pairs)
        fake = self._fake
        needs_token = fake.auth and not details.method.startswith(_NO_AUTH_PREFIXES)
        if needs_token and fake._claims_from_metadata(metadata) is None:
            fake._record_grpc(GrpcCall(details.method, metadata, pairs, "UNAUTHENTICATED"))

            def deny(request: Any, context: grpc.ServicerContext) -> Any:
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "token parse error [JWT_VERIFICATION_FAILED]")

            return grpc.unary_unary_rpc_method_handler(deny)
        if details.method == _HEALTH_CHECK:
            fake._record_grpc(GrpcCall(details.method, metadata, pairs))

            def health(request: bytes, context: grpc.ServicerContext) -> bytes:
                service = _decode_health_request(request)
                if service not in ("", "flyteadmin"):
                    context.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
                return _encode_health_response(1)  # SERVING

            return grpc.unary_unary_rpc_method_handler(health)
        handler = continuation(details)
        fake._record_grpc(GrpcCall(details.method, metadata, pairs, "OK" if handler else "UNIMPLEMENTED"))
        return handler


class FakeFlyteAdmin:
    """flyteadmin on two ephemeral 127.0.0.1 ports: gRPC (h2c) and HTTP.

    Args:
        auth: enable flyteadmin's own auth (``useAuth``): the auth metadata services are served and
            calls need a token from ``/oauth2/token``.
        client_id: the confidential client the token endpoint accepts (flyteadmin's default
            ``flytepropeller``).
        client_secret: its secret; random when not given (read :attr:`client_secret`).
        public_url: the URL the auth metadata advertises; defaults to :attr:`http_url`. Set it to
            the IapProxy's URL so token requests go through IAP.
        projects: project ids to create (each with domains development, staging, production).
        token_lifetime: seconds the access tokens from ``/oauth2/token`` live.
        certificate_file: PEM certificate for secure mode (flyteadmin's ``security.ssl.certificateFile``);
            with ``key_file``, both ports serve TLS and the REST gateway checks its own certificate.
        key_file: its PEM private key (``security.ssl.keyFile``).
        server_http_port: flyteadmin's configured ``server.httpPort``, which names the gateway's TLS
            server name ``0.0.0.0:<port>`` in secure mode; the fake itself binds an ephemeral port.
    """

    def __init__(
        self,
        *,
        auth: bool = False,
        client_id: str = "flytepropeller",
        client_secret: str | None = None,
        public_url: str | None = None,
        projects: tuple[str, ...] = ("flytesnacks",),
        token_lifetime: int = 3600,
        certificate_file: str | os.PathLike[str] | None = None,
        key_file: str | os.PathLike[str] | None = None,
        server_http_port: int = 8088,
    ) -> None:
        if (certificate_file is None) != (key_file is None):
            raise ValueError("secure mode needs both certificate_file and key_file")
        self.auth = auth
        self.certificate_file = os.fspath(certificate_file) if certificate_file is not None else None
        self.key_file = os.fspath(key_file) if key_file is not None else None
        self.server_http_port = server_http_port
        self.client_id = client_id
        self.client_secret = client_secret or secrets.token_urlsafe(24)
        self.token_lifetime = token_lifetime
        self._public_url = public_url
        self._signing_key = secrets.token_bytes(32)
        self._store = _Store()
        self._lock = threading.Lock()
        self.grpc_calls: list[GrpcCall] = []
        self.http_requests: list[HttpRequest] = []
        #: access tokens issued by ``/oauth2/token``, in order
        self.issued_tokens: list[str] = []
        for project in projects:
            self.add_project(project)
        self._grpc_server: grpc.Server | None = None
        self._http_server: ThreadingHTTPServer | None = None
        self.grpc_port = 0
        self.http_port = 0

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> FakeFlyteAdmin:
        """Start both servers (idempotent); returns self."""
        if self._grpc_server is not None:
            return self
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="fake-flyteadmin"),
            interceptors=[_Recorder(self)],
        )
        admin_pb2_grpc.add_AdminServiceServicer_to_server(_AdminServicer(self), server)
        dataproxy_pb2_grpc.add_DataProxyServiceServicer_to_server(_DataProxyServicer(self), server)
        if self.auth:
            auth_pb2_grpc.add_AuthMetadataServiceServicer_to_server(_AuthMetadataServicer(self), server)
            identity_pb2_grpc.add_IdentityServiceServicer_to_server(_IdentityServicer(self), server)
        if self.secure:
            key, cert = self._read_key_pair()
            credentials = grpc.ssl_server_credentials([(key, cert)])
            self.grpc_port = server.add_secure_port("127.0.0.1:0", credentials)
        else:
            self.grpc_port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self._grpc_server = server

        handler = type("_Handler", (_HttpHandler,), {"fake": self})
        self._http_server = _QuietHTTPServer(("127.0.0.1", 0), handler)
        self._http_server.daemon_threads = True
        if self.secure:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.certificate_file, self.key_file)  # type: ignore[arg-type]
            # the handshake runs in the request's thread, so a silent client cannot stall accept()
            self._http_server.socket = context.wrap_socket(
                self._http_server.socket, server_side=True, do_handshake_on_connect=False
            )
        self.http_port = self._http_server.server_address[1]
        threading.Thread(
            target=self._http_server.serve_forever,
            kwargs={"poll_interval": 0.05},  # stop() waits for one poll
            name="fake-flyteadmin-http",
            daemon=True,
        ).start()
        return self

    def stop(self) -> None:
        """Stop both servers."""
        self.stop_grpc()
        if self._http_server is not None:
            self._http_server.shutdown()
            self._http_server.server_close()
            self._http_server = None

    def stop_grpc(self) -> None:
        """Stop only the gRPC server, e.g. to show a gRPC backend that is down behind the load balancer."""
        if self._grpc_server is not None:
            self._grpc_server.stop(grace=None).wait(5)
            self._grpc_server = None

    def __enter__(self) -> FakeFlyteAdmin:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _read_key_pair(self) -> tuple[bytes, bytes]:
        with open(self.key_file, "rb") as key, open(self.certificate_file, "rb") as cert:  # type: ignore[arg-type]
            return key.read(), cert.read()

    # -- addresses -------------------------------------------------------------------------------
    @property
    def secure(self) -> bool:
        """Secure mode: TLS on both ports with :attr:`certificate_file`."""
        return self.certificate_file is not None

    @property
    def host_address(self) -> str:
        """flyteadmin's ``cfg.GetHostAddress()``: the server name its REST gateway dials itself with."""
        return f"0.0.0.0:{self.server_http_port}"

    @property
    def grpc_target(self) -> str:
        """``127.0.0.1:PORT`` of the gRPC server (plaintext HTTP/2; TLS in secure mode)."""
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        """``http://127.0.0.1:PORT`` of the HTTP server (``https://`` in secure mode)."""
        return f"{'https' if self.secure else 'http'}://127.0.0.1:{self.http_port}"

    def gateway_dial_error(self) -> str | None:
        """Why the REST gateway cannot reach the gRPC services in secure mode (None: it can).

        The dial flyteadmin makes: TLS to its own gRPC server, trusting only the served certificate,
        then Go's host name check against :attr:`host_address`.
        """
        if not self.secure:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False  # Go's check, on flyteadmin's server name, follows
        context.load_verify_locations(cafile=self.certificate_file)
        context.set_alpn_protocols(["h2"])
        prefix = 'connection error: desc = "transport: authentication handshake failed: tls: '
        try:
            with (
                socket.create_connection(("127.0.0.1", self.grpc_port), timeout=5) as raw,
                context.wrap_socket(raw) as conn,
            ):
                der = conn.getpeercert(binary_form=True)
        except ssl.SSLCertVerificationError as exc:
            return f'{prefix}failed to verify certificate: x509: {exc.verify_message}"'
        except OSError as exc:
            return f'connection error: desc = "transport: {exc}"'
        if der is None:
            return f'{prefix}no certificate"'
        problem = verify_hostname(x509.load_der_x509_certificate(der), self.host_address)
        return f'{prefix}failed to verify certificate: {problem}"' if problem else None

    @property
    def public_url(self) -> str:
        """What the auth metadata advertises as flyteadmin's URL (issuer, token endpoint)."""
        return (self._public_url or self.http_url).rstrip("/")

    @public_url.setter
    def public_url(self, value: str | None) -> None:
        self._public_url = value

    # -- data --------------------------------------------------------------------------------------
    def _domains(self) -> list[project_pb2.Domain]:
        return [project_pb2.Domain(id=d, name=d) for d in ("development", "staging", "production")]

    def add_project(self, project_id: str, name: str | None = None) -> None:
        """Create a project with the three default domains."""
        self._store.projects[project_id] = project_pb2.Project(
            id=project_id, name=name or project_id, domains=self._domains(), state=project_pb2.Project.ACTIVE
        )

    def add_execution(
        self,
        name: str,
        *,
        project: str = "flytesnacks",
        domain: str = "development",
        phase: str = "SUCCEEDED",
        launch_plan: str = "workflows.example.wf",
        version: str = "v1",
    ) -> execution_pb2.Execution:
        """Seed a workflow execution (for ``GetExecution`` / ``recent_executions``); returns it."""
        ident = identifier_pb2.WorkflowExecutionIdentifier(project=project, domain=domain, name=name)
        lp = identifier_pb2.Identifier(
            resource_type=identifier_pb2.LAUNCH_PLAN,
            project=project,
            domain=domain,
            name=launch_plan,
            version=version,
        )
        execution = execution_pb2.Execution(id=ident)
        execution.spec.launch_plan.CopyFrom(lp)
        execution.spec.metadata.mode = execution_pb2.ExecutionMetadata.MANUAL
        execution.closure.phase = core_execution_pb2.WorkflowExecution.Phase.Value(phase)
        execution.closure.created_at.CopyFrom(_now())
        execution.closure.started_at.CopyFrom(execution.closure.created_at)
        execution.closure.updated_at.CopyFrom(execution.closure.created_at)
        execution.closure.workflow_id.CopyFrom(lp)
        execution.closure.workflow_id.resource_type = identifier_pb2.WORKFLOW
        self._store.executions[_id_key(ident)] = execution
        return execution

    @property
    def uploads(self) -> dict[str, bytes]:
        """Files PUT to the signed URLs from ``CreateUploadLocation``, by object key."""
        return self._store.uploads

    # -- records -----------------------------------------------------------------------------------
    def _record_grpc(self, call: GrpcCall) -> None:
        with self._lock:
            self.grpc_calls.append(call)

    def _record_http(self, request: HttpRequest) -> None:
        with self._lock:
            self.http_requests.append(request)

    def calls_to(self, method_suffix: str) -> list[GrpcCall]:
        """Recorded gRPC calls whose method ends with ``method_suffix`` (e.g. ``"ListProjects"``)."""
        with self._lock:
            return [c for c in self.grpc_calls if c.method.endswith(method_suffix)]

    def requests_to(self, path_prefix: str) -> list[HttpRequest]:
        """Recorded HTTP requests whose path starts with ``path_prefix``."""
        with self._lock:
            return [r for r in self.http_requests if r.path.startswith(path_prefix)]

    def clear_records(self) -> None:
        """Forget recorded calls and requests."""
        with self._lock:
            self.grpc_calls.clear()
            self.http_requests.clear()

    # -- tokens ------------------------------------------------------------------------------------
    def issue_token(self, subject: str | None = None, scope: str = "all") -> str:
        """An access token this flyteadmin accepts (what ``/oauth2/token`` answers)."""
        now = int(time.time())
        token = jwt.encode(
            {
                "iss": self.public_url,
                "aud": [self.public_url],
                "sub": subject or self.client_id,
                "client_id": self.client_id,
                "scp": scope.split(),
                "iat": now,
                "exp": now + self.token_lifetime,
                "jti": secrets.token_hex(8),
            },
            self._signing_key,
            algorithm="HS256",
        )
        with self._lock:
            self.issued_tokens.append(token)
        return token

    def _claims_from_metadata(self, metadata: dict[str, str]) -> dict[str, Any] | None:
        """Claims of a valid token in flyte-authorization (or authorization), else None."""
        for key in (AUTHORIZATION_METADATA_KEY, "authorization"):
            value = metadata.get(key, "")
            scheme, _, token = value.partition(" ")
            if scheme.lower() != "bearer" or not token:
                continue
            try:
                return jwt.decode(
                    token.strip(), self._signing_key, algorithms=["HS256"], options={"verify_aud": False}
                )
            except jwt.PyJWTError:
                continue
        return None


class _QuietHTTPServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that drops the connection or fails the TLS handshake is not the fake's error
        import sys

        if not isinstance(sys.exc_info()[1], ssl.SSLError | ConnectionError):
            super().handle_error(request, client_address)


class _HttpHandler(BaseHTTPRequestHandler):
    fake: FakeFlyteAdmin
    protocol_version = "HTTP/1.1"
    server_version = "fake-flyteadmin"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _body(self) -> bytes:
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def _reply(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        # sent by _handle after the request is recorded, so a test that has the answer sees the record
        self._answer = (status, body, content_type)

    def _json(self, status: int, payload: Any) -> None:
        self._reply(status, json.dumps(payload).encode())

    def _handle(self) -> None:
        body = self._body()
        path = urllib.parse.urlsplit(self.path).path
        headers = {k.lower(): v for k, v in self.headers.items()}
        status = self._dispatch(path, headers, body)
        self.fake._record_http(HttpRequest(self.command, self.path, headers, body, status))
        status, payload, content_type = self._answer
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_HEAD = _handle

    def _dispatch(self, path: str, headers: dict[str, str], body: bytes) -> int:
        fake = self.fake
        if path == "/healthcheck":
            self._reply(200, b"", "text/plain")
            return 200
        if path == "/oauth2/token" and self.command == "POST":
            return self._token(headers, body)
        if path == "/config/v1/flyte_client":
            if not fake.auth:
                self._json(404, {"error": "auth is not enabled"})
                return 404
            self._json(
                200,
                {
                    "client_id": "flytectl",
                    "redirect_uri": "http://localhost:53593/callback",
                    "scopes": ["offline", "all"],
                    "authorization_metadata_key": AUTHORIZATION_METADATA_KEY,
                },
            )
            return 200
        if path.startswith("/upload/") and self.command == "PUT":
            key = urllib.parse.unquote(path[len("/upload/") :])
            fake._store.uploads[key] = body
            self._reply(200, b"", "text/plain")
            return 200
        if path.startswith("/api/v1/") and path != "/api/v1/openapi":
            # grpc-gateway routes: they reach the gRPC services through the self-dial (secure mode)
            dial_error = fake.gateway_dial_error()
            if dial_error is not None:
                self._json(503, {"code": 14, "message": dial_error, "details": []})
                return 503
            if fake.auth and fake._claims_from_metadata(headers) is None:
                self._json(401, {"error": "unauthenticated", "code": 16})
                return 401
            if path == "/api/v1/projects":
                projects = [{"id": p.id, "name": p.name} for p in fake._store.projects.values()]
                self._json(200, {"projects": projects})
                return 200
            if path == "/api/v1/version":
                self._json(200, {"control_plane_version": {"Version": _VERSION}})
                return 200
        self._reply(404, b"404 page not found\n", "text/plain; charset=utf-8")
        return 404

    def _token(self, headers: dict[str, str], body: bytes) -> int:
        fake = self.fake
        form = dict(urllib.parse.parse_qsl(body.decode("utf-8", "replace")))
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        scheme, _, value = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            with contextlib.suppress(ValueError):
                decoded = base64.b64decode(value).decode()
                user, _, password = decoded.partition(":")
                client_id, client_secret = (
                    urllib.parse.unquote_plus(user),
                    urllib.parse.unquote_plus(password),
                )
        if form.get("grant_type") != "client_credentials":
            self._json(400, {"error": "unsupported_grant_type"})
            return 400
        if not fake.auth or client_id != fake.client_id or client_secret != fake.client_secret:
            self._json(401, {"error": "invalid_client", "error_description": "client authentication failed"})
            return 401
        token = fake.issue_token(scope=form.get("scope") or "all")
        self._json(200, {"access_token": token, "token_type": "bearer", "expires_in": fake.token_lifetime})
        return 200
