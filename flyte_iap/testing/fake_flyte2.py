"""A local Flyte 2 control plane: the Connect services the ``flyte`` SDK calls, over plain HTTP/1.1.

Example::

    from flyte_iap.testing import FakeFlyte2

    with FakeFlyte2(stream_interval=0.5) as flyte2:  # or .start() / .stop()
        flyte2.url  # "http://127.0.0.1:PORT": the backend's one port (8090 in the chart)
        flyte2.add_run("r-123", project="flytesnacks", domain="development")
        ...  # the flyte SDK, through IapProxy, calls it
        for call in flyte2.calls:
            call.method  # "flyteidl2.workflow.RunService/ListRuns"
            call.headers  # lower-case names, as received (after IAP)
            call.identity  # e-mail decoded from the claims JWT header, or None
        flyte2.stream_sent  # [(run name, message index, monotonic time sent)]

Why it looks like this (flyte 2.12.1, flyteidl2 2.0.51, flyteorg/flyte@v2.0.43):

* The backend is one plain-HTTP listener speaking HTTP/1.1 and h2c
  (``flyteorg/flyte@v2.0.43:flytestdlib/app/app.go``, ``httpProtocols``) with connect-go handlers; a
  load balancer in front may use HTTP/1.1, and so does this fake (no h2c: IapProxy talks HTTP/1.1 to
  it, like a GCE backend service without ``app-protocols``). ``GET /healthz`` and ``/readyz`` answer
  ``OK`` as ``app.go`` registers them.
* The SDK speaks the Connect protocol with binary protobuf (``flyte`` wheel
  ``flyte/remote/_client/controlplane.py`` builds flyteidl2's ``*_connect.py`` clients on pyqwest):
  unary calls are ``POST /<service>/<method>`` with ``content-type: application/proto``, a gzip body
  (``content-encoding: gzip``) and ``connect-protocol-version: 1``; server streams use
  ``application/connect+proto`` and 5-byte envelopes ending with an end-of-stream envelope (flag 2,
  JSON). Both are answered here; the gzip request body is decoded as the backend's
  ``requestGzipDecompressMiddleware`` does (same file), and unary answers are gzip'd when the client
  accepts it, so a proxy that loses ``content-encoding`` breaks the client.
* Services: ``ProjectService`` (``ListProjects``, ``GetProject``) for ``flyte get project`` and
  ``flyte.remote.Project``; ``RunService`` (``ListRuns``, ``GetRunDetails``, and the server streams
  ``WatchActionDetails`` and ``WatchRunDetails``) for ``flyte get run``, ``flyte.remote.Run.listall``,
  ``Run.get`` and ``Run.watch``. Every other method of these services is ``unimplemented`` (HTTP 501),
  an unknown service is 404, as connect-go answers.
* ``org`` is never validated: the SDK derives it from the endpoint's first DNS label, which is
  ``localhost`` or ``127`` here.
* Identity: the runs service trusts, unverified, a claims JWT in a configurable header
  (``runs.identityHeaders.claimsJwtHeader``, ``flyteorg/flyte@v2.0.43:runs/config/config.go``,
  ``runs/service/identity.go``); :attr:`identity_header` (default IAP's ``x-goog-iap-jwt-assertion``)
  is decoded the same way into :attr:`Call.identity`.

A run walks through ``stream_phases`` (queued, running, succeeded by default), one every
``stream_interval`` seconds from its first watch; a watch stream sends the current phase, then each
later one as it is reached, flushing each message as its own HTTP chunk (so a proxy that buffers shows
up as messages arriving together), and ends after the last. A client that re-subscribes (after a load
balancer cut the stream) gets the current phase, not the run's history. Request bodies over
``max_body`` bytes (compressed or not) get ``resource_exhausted``. Needs ``flyteidl2`` (the ``flyte``
SDK's protobuf package) at :meth:`start`; importing this module needs only the standard library.
"""

from __future__ import annotations

import base64
import gzip
import json
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Call", "FakeFlyte2"]

_PROJECT_SERVICE = "flyteidl2.project.ProjectService"
_RUN_SERVICE = "flyteidl2.workflow.RunService"
#: Methods of the served services that answer ``unimplemented`` (flyteidl2 2.0.51's service definitions).
_OTHER_METHODS = {
    _PROJECT_SERVICE: ("CreateProject", "UpdateProject"),
    _RUN_SERVICE: (
        "CreateRun",
        "AbortRun",
        "AbortAction",
        "SignalEvent",
        "GetActionDetails",
        "GetActionData",
        "GetActionDataURIs",
        "WatchRuns",
        "ListActions",
        "WatchActions",
        "WatchClusterEvents",
        "WatchGroups",
    ),
}
#: Connect error codes -> HTTP status (connect protocol spec, "Error Codes").
_CODE_STATUS = {
    "invalid_argument": 400,
    "not_found": 404,
    "unimplemented": 501,
    "resource_exhausted": 429,
    "internal": 500,
    "unauthenticated": 401,
}
_PHASES = {
    "queued": "ACTION_PHASE_QUEUED",
    "initializing": "ACTION_PHASE_INITIALIZING",
    "running": "ACTION_PHASE_RUNNING",
    "succeeded": "ACTION_PHASE_SUCCEEDED",
    "failed": "ACTION_PHASE_FAILED",
}


@dataclass(frozen=True)
class Call:
    """One request the control plane received."""

    method: str  # "flyteidl2.project.ProjectService/ListProjects"
    kind: str  # "unary" or "stream"
    status: int
    headers: dict[str, str]
    identity: str | None  # e-mail from the claims JWT header, unverified (as the backend does)
    org: str | None  # what the SDK sent as org, never checked


class _ConnectError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class FakeFlyte2:
    """The Flyte 2 control plane's Connect API, on 127.0.0.1.

    Args:
        projects: project ids to list (each with the default domains).
        domains: domain ids of every project.
        stream_interval: seconds between the messages of a watch stream.
        stream_phases: phases a watch stream walks through (the last one ends it).
        identity_header: the claims JWT header whose ``email`` becomes :attr:`Call.identity`
            (``runs.identityHeaders.claimsJwtHeader``).
        max_body: largest request body accepted, compressed and decompressed.
        host: interface to listen on.
        port: 0 for an ephemeral port.
    """

    def __init__(
        self,
        *,
        projects: Sequence[str] = ("flytesnacks",),
        domains: Sequence[str] = ("development", "staging", "production"),
        stream_interval: float = 0.3,
        stream_phases: Sequence[str] = ("queued", "running", "succeeded"),
        identity_header: str = "x-goog-iap-jwt-assertion",
        max_body: int = 4 << 20,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        unknown = [p for p in stream_phases if p not in _PHASES]
        if unknown or not stream_phases:
            raise ValueError(f"stream_phases must be a non-empty sequence of {sorted(_PHASES)}")
        self.projects = list(projects)
        self.domains = list(domains)
        self.stream_interval = stream_interval
        self.stream_phases = tuple(stream_phases)
        self.identity_header = identity_header.lower()
        self.max_body = max_body
        self.host = host
        self.port = port
        #: runs by name: (project, domain)
        self.runs: dict[str, tuple[str, str]] = {}
        self.calls: list[Call] = []
        #: (run name, index of the message in its stream, time.monotonic() when it was written)
        self.stream_sent: list[tuple[str, int, float]] = []
        self._watch_started: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._pb: Any = None
        self._routes: dict[str, tuple[str, Callable[..., Any], Any]] = {}

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> FakeFlyte2:
        """Start listening in a background thread (idempotent); returns self."""
        if self._server is not None:
            return self
        self._load_protos()
        self._stopping.clear()
        fake = self

        class Handler(_Handler):
            owner = fake

        self._server = _Server((self.host, self.port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-flyte2", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening; open streams end at their next message."""
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(10)
        self._server = self._thread = None

    def __enter__(self) -> FakeFlyte2:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    # -- data --------------------------------------------------------------------------------------
    def add_run(self, name: str, *, project: str = "flytesnacks", domain: str = "development") -> None:
        """A run that ``ListRuns`` lists and ``GetRunDetails``/the watch streams know."""
        with self._lock:
            self.runs[name] = (project, domain)

    def calls_to(self, method: str) -> list[Call]:
        """The calls whose method ends with ``method`` (e.g. ``"ListProjects"``)."""
        with self._lock:
            return [c for c in self.calls if c.method.endswith(method)]

    def reset(self) -> None:
        """Forget recorded calls and stream timings."""
        with self._lock:
            self.calls.clear()
            self.stream_sent.clear()
            self._watch_started.clear()

    def _record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    # -- protobuf (flyteidl2, imported lazily) -----------------------------------------------------
    def _load_protos(self) -> None:
        if self._pb is not None:
            return
        try:
            from flyteidl2.common import identifier_pb2, phase_pb2
            from flyteidl2.project import project_service_pb2
            from flyteidl2.workflow import run_definition_pb2, run_service_pb2
        except ImportError as exc:  # the default test env has flytekit 1.x, not the flyte SDK
            raise ImportError(
                "FakeFlyte2 needs flyteidl2 (installed with the `flyte` SDK: pip install flyte)"
            ) from exc

        class _Protos:
            identifier = identifier_pb2
            phase = phase_pb2
            project = project_service_pb2
            run_def = run_definition_pb2
            run = run_service_pb2

        self._pb = _Protos
        p, r = project_service_pb2, run_service_pb2
        self._routes = {
            f"{_PROJECT_SERVICE}/ListProjects": ("unary", self._list_projects, p.ListProjectsRequest),
            f"{_PROJECT_SERVICE}/GetProject": ("unary", self._get_project, p.GetProjectRequest),
            f"{_RUN_SERVICE}/ListRuns": ("unary", self._list_runs, r.ListRunsRequest),
            f"{_RUN_SERVICE}/GetRunDetails": ("unary", self._get_run_details, r.GetRunDetailsRequest),
            f"{_RUN_SERVICE}/WatchActionDetails": (
                "stream",
                self._watch_action_details,
                r.WatchActionDetailsRequest,
            ),
            f"{_RUN_SERVICE}/WatchRunDetails": ("stream", self._watch_run_details, r.WatchRunDetailsRequest),
        }

    def _project(self, project_id: str, org: str) -> Any:
        pb = self._pb.project
        return pb.Project(
            id=project_id,
            name=project_id,
            org=org,
            domains=[pb.Domain(id=d, name=d) for d in self.domains],
            state=pb.PROJECT_STATE_ACTIVE if hasattr(pb, "PROJECT_STATE_ACTIVE") else 0,
        )

    def _list_projects(self, request: Any) -> Any:
        pb = self._pb.project
        return request.org, pb.ListProjectsResponse(
            projects=pb.Projects(projects=[self._project(p, request.org) for p in self.projects])
        )

    def _get_project(self, request: Any) -> Any:
        if request.id not in self.projects:
            raise _ConnectError("not_found", f"project {request.id!r} not found")
        return request.org, self._pb.project.GetProjectResponse(
            project=self._project(request.id, request.org)
        )

    def _action_id(self, name: str, org: str) -> Any:
        ident = self._pb.identifier
        project, domain = self.runs[name]
        run = ident.RunIdentifier(org=org, project=project, domain=domain, name=name)
        return ident.ActionIdentifier(run=run, name="a0")

    def _action_details(self, name: str, org: str, phase: str) -> Any:
        rd = self._pb.run_def
        return rd.ActionDetails(
            id=self._action_id(name, org),
            metadata=rd.ActionMetadata(funtion_name="main", environment_name="default"),
            status=rd.ActionStatus(phase=getattr(self._pb.phase, _PHASES[phase]), attempts=1),
        )

    def _list_runs(self, request: Any) -> Any:
        rd = self._pb.run_def
        org = request.project_id.organization or request.org
        project, domain = request.project_id.name, request.project_id.domain
        with self._lock:
            names = [n for n, (p, d) in self.runs.items() if (not project or p == project)]
            names = [n for n in names if not domain or self.runs[n][1] == domain]
        runs = []
        for name in names:
            details = self._action_details(name, org, self.stream_phases[-1])
            runs.append(
                rd.Run(action=rd.Action(id=details.id, metadata=details.metadata, status=details.status))
            )
        return org, self._pb.run.ListRunsResponse(runs=runs)

    def _known_run(self, name: str) -> None:
        with self._lock:
            if name not in self.runs:
                raise _ConnectError("not_found", f"run {name!r} not found")

    def _get_run_details(self, request: Any) -> Any:
        self._known_run(request.run_id.name)
        details = self._action_details(request.run_id.name, request.run_id.org, self.stream_phases[-1])
        return request.run_id.org, self._pb.run.GetRunDetailsResponse(
            details=self._pb.run_def.RunDetails(action=details)
        )

    def _phases(self, name: str, org: str, wrap: Callable[[Any], Any]) -> Iterator[Any]:
        # The run's clock starts at its first watch; every subscription first sends the phase the run
        # is in now, then each later one when it is reached, as a backend's watch does (snapshot, then
        # updates). A client that re-subscribes after a cut-off stream thus picks up where it is.
        with self._lock:
            started = self._watch_started.setdefault(name, time.monotonic())
        last = len(self.stream_phases) - 1
        sent = -1
        while True:
            index = min(int((time.monotonic() - started) / self.stream_interval), last)
            if index != sent:
                yield wrap(self._action_details(name, org, self.stream_phases[index]))
                with self._lock:
                    self.stream_sent.append((name, index, time.monotonic()))
                sent = index
            if index == last:
                return
            wait = started + (index + 1) * self.stream_interval - time.monotonic()
            if self._stopping.wait(max(wait, 0.0)):
                return

    def _watch_action_details(self, request: Any) -> Any:
        name, org = request.action_id.run.name, request.action_id.run.org
        self._known_run(name)
        return org, self._phases(name, org, lambda d: self._pb.run.WatchActionDetailsResponse(details=d))

    def _watch_run_details(self, request: Any) -> Any:
        name, org = request.run_id.name, request.run_id.org
        self._known_run(name)
        run_details = self._pb.run_def.RunDetails
        return org, self._phases(
            name, org, lambda d: self._pb.run.WatchRunDetailsResponse(details=run_details(action=d))
        )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = False


def _identity(token: str | None) -> str | None:
    """The ``email`` claim of a JWT, decoded without verification (``runs/service/identity.go``)."""
    if not token:
        return None
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, TypeError):
        return None
    email = claims.get("email") if isinstance(claims, dict) else None
    return email if isinstance(email, str) else None


def _gunzip(data: bytes, limit: int) -> bytes:
    decompressor = zlib.decompressobj(wbits=31)
    try:
        out = decompressor.decompress(data, limit + 1)
    except zlib.error as exc:
        raise _ConnectError("invalid_argument", f"bad gzip body: {exc}") from exc
    if len(out) > limit or decompressor.unconsumed_tail:
        raise _ConnectError("resource_exhausted", "request body too large")
    return out


def _envelope(flags: int, payload: bytes) -> bytes:
    return struct.pack(">BI", flags, len(payload)) + payload


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-flyte2"
    owner: FakeFlyte2

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        if self.path in ("/healthz", "/readyz"):
            self._plain(200, b"OK")
        else:
            self._plain(404, b"404 page not found\n")

    def do_POST(self) -> None:
        fake = self.owner
        method = self.path.lstrip("/").split("?")[0]
        headers = {k.lower(): v for k, v in self.headers.items()}
        identity = _identity(headers.get(fake.identity_header))
        try:
            body = self._read_body(fake.max_body)
        except _ConnectError as exc:
            self._error(exc, method, "unary", headers, identity)
            return
        except ValueError:
            self._plain(400, b"bad request\n", close=True)
            return
        route = fake._routes.get(method)
        kind = route[0] if route else "unary"
        service = method.partition("/")[0]
        try:
            if route is None:
                if method.partition("/")[2] in _OTHER_METHODS.get(service, ()):
                    raise _ConnectError("unimplemented", f"{method} is not implemented")
                self._record(method, kind, 404, headers, identity, None)
                self._plain(404, b"404 page not found\n")
                return
            _, handler, request_type = route
            request = request_type()
            if kind == "unary":
                self._unary(method, handler, request, body, headers, identity)
            else:
                self._stream(method, handler, request, body, headers, identity)
        except _ConnectError as exc:
            self._error(exc, method, kind, headers, identity)

    # -- bodies ------------------------------------------------------------------------------------
    def _read_body(self, limit: int) -> bytes:
        if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
            data = bytearray()
            while True:
                size = int(self.rfile.readline(1024).split(b";")[0].strip() or b"x", 16)
                if size < 0:
                    raise ValueError("negative chunk size")
                if size == 0:
                    while self.rfile.readline(65536) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                if len(data) + size > limit:
                    raise _ConnectError("resource_exhausted", "request body too large")
                data += self.rfile.read(size)
                self.rfile.readline(8)
            raw = bytes(data)
        else:
            length = int(self.headers.get("content-length") or 0)
            if length < 0:
                raise ValueError("negative content-length")
            if length > limit:
                raise _ConnectError("resource_exhausted", "request body too large")
            raw = self.rfile.read(length)
        if (self.headers.get("content-encoding") or "").lower() == "gzip":
            raw = _gunzip(raw, limit)
        return raw

    def _unary(
        self,
        method: str,
        handler: Callable[[Any], Any],
        request: Any,
        body: bytes,
        headers: dict[str, str],
        identity: str | None,
    ) -> None:
        content_type = headers.get("content-type", "")
        if content_type != "application/proto":
            raise _ConnectError("unimplemented", f"unsupported content-type {content_type!r}")
        self._parse(request, body)
        org, response = handler(request)
        payload = response.SerializeToString()
        out = [("Content-Type", "application/proto")]
        if "gzip" in (headers.get("accept-encoding") or "").lower():
            payload = gzip.compress(payload)
            out.append(("Content-Encoding", "gzip"))
        self._record(method, "unary", 200, headers, identity, org)
        self.send_response(200)
        for name, value in out:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _stream(
        self,
        method: str,
        handler: Callable[[Any], Any],
        request: Any,
        body: bytes,
        headers: dict[str, str],
        identity: str | None,
    ) -> None:
        content_type = headers.get("content-type", "")
        if content_type != "application/connect+proto":
            raise _ConnectError("unimplemented", f"unsupported content-type {content_type!r}")
        if len(body) < 5:
            raise _ConnectError("invalid_argument", "missing request envelope")
        flags, length = struct.unpack(">BI", body[:5])
        message = body[5 : 5 + length]
        if len(message) != length:
            raise _ConnectError("invalid_argument", "truncated request envelope")
        if flags & 1:
            encoding = headers.get("connect-content-encoding", "")
            if encoding != "gzip":
                raise _ConnectError("internal", f"compressed envelope without a known encoding {encoding!r}")
            message = _gunzip(message, self.owner.max_body)
        self._parse(request, message)
        org, messages = handler(request)
        self._record(method, "stream", 200, headers, identity, org)
        self.send_response(200)
        self.send_header("Content-Type", "application/connect+proto")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for response in messages:
                self._chunk(_envelope(0, response.SerializeToString()))
            self._chunk(_envelope(2, b"{}"))
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    @staticmethod
    def _parse(request: Any, data: bytes) -> None:
        from google.protobuf.message import DecodeError

        try:
            request.ParseFromString(data)
        except DecodeError as exc:
            raise _ConnectError("invalid_argument", f"cannot decode request: {exc}") from exc

    # -- answers -----------------------------------------------------------------------------------
    def _record(
        self, method: str, kind: str, status: int, headers: dict[str, str], identity: str | None, org: Any
    ) -> None:
        self.owner._record(Call(method, kind, status, headers, identity, org))

    def _error(
        self, exc: _ConnectError, method: str, kind: str, headers: dict[str, str], identity: str | None
    ) -> None:
        status = _CODE_STATUS.get(exc.code, 500)
        payload = json.dumps({"code": exc.code, "message": exc.message}).encode()
        self._record(method, kind, status, headers, identity, None)
        if kind == "stream":
            # Connect streams report errors in the end-of-stream envelope of a 200 response.
            self.send_response(200)
            self.send_header("Content-Type", "application/connect+proto")
            body = _envelope(2, json.dumps({"error": {"code": exc.code, "message": exc.message}}).encode())
        else:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            body = payload
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _plain(self, status: int, body: bytes, *, close: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)
