"""A fake of the Kubernetes API server for the platform's five custom resources (Workflow, Model,
Agent, Orchestrator, Config), plus coordination.k8s.io/v1 Leases (leader election), over real
HTTP.

No Kubernetes API server can run on the machines these tests run on, so this stands in for it
at the HTTP boundary: the official kubernetes client talks to it exactly as to a cluster
(list, watch with chunked JSON lines, merge-patch of the status subresource, 410 Gone).
It keeps what a real server keeps: resourceVersion, generation (bumped only when spec
changes), a status subresource that ignores everything but `status`, and an event history.
Leases: GET, POST (409 AlreadyExists) and PUT (409 Conflict on a stale resourceVersion), with
the resourceVersion a real server keeps; `refuse_leases` makes them answer 500 to some clients.
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

GROUP = "ingestion.platform.io"
VERSION = "v1alpha1"


# The plural each kind is served under, as the chart's CRDs name them.
PLURALS = {
    "Workflow": "workflows",
    "Model": "models",
    "Agent": "agents",
    "Orchestrator": "orchestrators",
    "Config": "configs",
}
_COLLECTION = re.compile(
    rf"^/apis/{re.escape(GROUP)}/{VERSION}(?:/namespaces/(?P<ns>[^/]+))?"
    rf"/(?P<plural>{'|'.join(PLURALS.values())})"
    r"(?:/(?P<name>[^/]+)(?P<status>/status)?)?$"
)


_LEASES = re.compile(
    r"^/apis/coordination\.k8s\.io/v1/namespaces/(?P<ns>[^/]+)/leases(?:/(?P<name>[^/]+))?$"
)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class FakeKubeApi:
    """State of the fake server plus the helpers a test uses to act as `kubectl`.

    `plural` is the kind `get`, `delete` and `backdate` mean when not told another; `apply`
    reads the kind from the resource."""

    def __init__(self, token: str = "fake-token", plural: str = "workflows") -> None:
        self.token = token
        self.plural = plural
        # Objects by (plural, namespace, name); events as (resourceVersion, type, plural, object).
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.events: list[tuple[int, str, str, dict[str, Any]]] = []
        self.requests: list[dict[str, Any]] = []
        self.resource_version = 100
        self.oldest_watchable = 0
        # Leases by (namespace, name); every lease request with its client and answer.
        self.leases: dict[tuple[str, str], dict[str, Any]] = {}
        self.lease_requests: list[dict[str, Any]] = []
        # User-Agents whose lease requests get 500 ("*": everyone's), as a partitioned client.
        self.refuse_leases: set[str] = set()
        # Seconds a lease GET waits before it answers (lets a test make two reads meet).
        # Set to a Barrier of N: the next N Lease reads are answered once all N have read the same
        # state (a race of N replicas that all read before any writes, made certain), once.
        self.lease_reads_together: threading.Barrier | None = None
        # Plurals whose lists and watches answer 500 (an API server in trouble), until removed;
        # plurals whose watches alone answer 403 (a Role without the `watch` verb).
        self.refuse_reads: set[str] = set()
        self.refuse_watches: set[str] = set()
        self.cond = threading.Condition()
        self.stopping = False
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ server

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        api = self

        class Handler(_Handler):
            fake = api

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # ------------------------------------------------------------------ kubectl

    def apply(self, resource: dict[str, Any], namespace: str = "ingest") -> dict[str, Any]:
        """Create or update a resource like `kubectl apply` (status is not touched)."""
        with self.cond:
            name = resource["metadata"]["name"]
            key = (PLURALS.get(resource.get("kind", ""), self.plural), namespace, name)
            current = self.objects.get(key)
            if current is None:
                obj = copy.deepcopy(resource)
                obj["metadata"].update(
                    namespace=namespace,
                    uid=str(uuid.uuid4()),
                    generation=1,
                    creationTimestamp=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                )
                kind = "ADDED"
            else:
                obj = copy.deepcopy(current)
                if obj.get("spec") != resource.get("spec"):
                    obj["metadata"]["generation"] += 1
                obj["spec"] = copy.deepcopy(resource.get("spec"))
                kind = "MODIFIED"
            self._store(key, obj, kind)
            return copy.deepcopy(obj)

    def delete(self, name: str, namespace: str = "ingest", plural: str | None = None) -> None:
        with self.cond:
            plural = plural or self.plural
            obj = self.objects.pop((plural, namespace, name))
            self.resource_version += 1
            obj["metadata"]["resourceVersion"] = str(self.resource_version)
            self.events.append((self.resource_version, "DELETED", plural, copy.deepcopy(obj)))
            self.cond.notify_all()

    def get(
        self, name: str, namespace: str = "ingest", plural: str | None = None
    ) -> dict[str, Any]:
        with self.cond:
            return copy.deepcopy(self.objects[(plural or self.plural, namespace, name)])

    def backdate(
        self, name: str, created: str, namespace: str = "ingest", plural: str | None = None
    ) -> None:
        """Set a resource's creationTimestamp (which of two resources is the older), silently."""
        with self.cond:
            key = (plural or self.plural, namespace, name)
            self.objects[key]["metadata"]["creationTimestamp"] = created

    def expire_history(self) -> None:
        """Compact the event history: every open watch (and any from an older resourceVersion)
        gets 410 Gone. The resourceVersion moves on first, as a cluster's does with every other
        object's writes, so that even a watch that has seen every event of its kind is behind
        the compaction; a new list answers a resourceVersion watchable again."""
        with self.cond:
            self.resource_version += 1
            self.oldest_watchable = self.resource_version
            self.cond.notify_all()

    def status_patches(
        self, name: str | None = None, plural: str | None = None
    ) -> list[dict[str, Any]]:
        return [
            r
            for r in list(self.requests)
            if r["method"] == "PATCH"
            and (name is None or r["name"] == name)
            and (plural is None or r["plural"] == plural)
        ]

    def count(self, method: str, *, watch: bool | None = None, plural: str | None = None) -> int:
        return sum(
            1
            for r in list(self.requests)
            if r["method"] == method
            and (watch is None or r.get("watch") == watch)
            and (plural is None or r.get("plural") == plural)
        )

    def lease(self, name: str, namespace: str = "ingest") -> dict[str, Any] | None:
        with self.cond:
            found = self.leases.get((namespace, name))
            return copy.deepcopy(found) if found is not None else None

    def _store(self, key: tuple[str, str, str], obj: dict[str, Any], kind: str) -> None:
        self.resource_version += 1
        obj["metadata"]["resourceVersion"] = str(self.resource_version)
        self.objects[key] = obj
        self.events.append((self.resource_version, kind, key[0], copy.deepcopy(obj)))
        self.cond.notify_all()


class _Handler(BaseHTTPRequestHandler):
    fake: FakeKubeApi
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        return

    def _send_json(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _status(self, code: int, reason: str, message: str) -> dict[str, Any]:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "code": code,
            "reason": reason,
            "message": message,
        }

    def _route(self) -> tuple[re.Match[str] | None, dict[str, list[str]]]:
        parsed = urlparse(self.path)
        return _COLLECTION.match(parsed.path), parse_qs(parsed.query)

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") == f"Bearer {self.fake.token}":
            return True
        self._send_json(401, self._status(401, "Unauthorized", "bad token"))
        return False

    def _lease_request(self, method: str) -> None:
        """GET, POST or PUT of a coordination.k8s.io/v1 Lease, as a real server answers them."""
        fake = self.fake
        match = _LEASES.match(urlparse(self.path).path)
        assert match is not None
        body: dict[str, Any] = {}
        if method in ("POST", "PUT"):
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
        agent = self.headers.get("User-Agent", "")
        record: dict[str, Any] = {"method": method, "path": self.path, "agent": agent}
        fake.lease_requests.append(record)

        def answer(code: int, payload: dict[str, Any]) -> None:
            record["code"] = code
            self._send_json(code, payload)

        if not self._authorized():
            record["code"] = 401
            return
        if fake.refuse_leases & {agent, "*"}:
            answer(500, self._status(500, "InternalError", "leases refused to this client"))
            return
        namespace, name = match["ns"], match["name"]
        if method == "GET":
            self._lease_read(namespace, name, answer)
            return
        with fake.cond:
            if method == "POST":
                name = (body.get("metadata") or {}).get("name")
            if not name:
                answer(405, self._status(405, "MethodNotAllowed", self.path))
                return
            key = (namespace, name)
            current = fake.leases.get(key)
            if method == "POST" and current is not None:
                answer(409, self._status(409, "AlreadyExists", f'leases "{name}" already exists'))
                return
            if method == "PUT":
                if current is None:
                    answer(404, self._status(404, "NotFound", f'leases "{name}" not found'))
                    return
                sent = str((body.get("metadata") or {}).get("resourceVersion") or "")
                if sent != current["metadata"]["resourceVersion"]:
                    message = (
                        f'Operation cannot be fulfilled on leases.coordination.k8s.io "{name}": '
                        "the object has been modified; please apply your changes to the latest "
                        "version and try again"
                    )
                    answer(409, self._status(409, "Conflict", message))
                    return
            metadata = (
                dict(current["metadata"])
                if current is not None
                else {
                    "name": name,
                    "namespace": namespace,
                    "uid": str(uuid.uuid4()),
                    "creationTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                }
            )
            fake.resource_version += 1
            metadata["resourceVersion"] = str(fake.resource_version)
            lease = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": metadata,
                "spec": copy.deepcopy(body.get("spec") or {}),
            }
            fake.leases[key] = lease
            answer(201 if method == "POST" else 200, copy.deepcopy(lease))

    def _lease_read(
        self, namespace: str, name: str, answer: Callable[[int, dict[str, Any]], None]
    ) -> None:
        with self.fake.cond:
            current = self.fake.leases.get((namespace, name))
            reply = (
                (404, self._status(404, "NotFound", f'leases "{name}" not found'))
                if current is None
                else (200, copy.deepcopy(current))
            )
        together = self.fake.lease_reads_together
        if together is not None:
            with contextlib.suppress(threading.BrokenBarrierError):
                if together.wait(timeout=30) == 0:
                    self.fake.lease_reads_together = None  # one race: later reads go straight
        answer(*reply)

    def _is_lease(self) -> bool:
        return _LEASES.match(urlparse(self.path).path) is not None

    def do_POST(self) -> None:
        if self._is_lease():
            self._lease_request("POST")
            return
        self._send_json(405, self._status(405, "MethodNotAllowed", self.path))

    def do_PUT(self) -> None:
        if self._is_lease():
            self._lease_request("PUT")
            return
        self._send_json(405, self._status(405, "MethodNotAllowed", self.path))

    def do_GET(self) -> None:
        if self._is_lease():
            self._lease_request("GET")
            return
        match, query = self._route()
        watching = query.get("watch", ["false"])[0] == "true"
        self.fake.requests.append(
            {
                "method": "GET",
                "path": self.path,
                "plural": match["plural"] if match else None,
                "at": time.monotonic(),
                "watch": watching,
                "query": query,
                "agent": self.headers.get("User-Agent", ""),
            }
        )
        if not self._authorized():
            return
        if match is None or match["name"]:
            self._send_json(404, self._status(404, "NotFound", self.path))
            return
        namespace, plural = match["ns"], match["plural"]
        if plural in self.fake.refuse_reads:
            self._send_json(500, self._status(500, "InternalError", f"{plural} refused"))
            return
        if watching and plural in self.fake.refuse_watches:
            self._send_json(403, self._status(403, "Forbidden", f"cannot watch {plural}"))
            return
        if watching:
            self._watch(plural, namespace, query)
            return
        with self.fake.cond:
            items = [
                copy.deepcopy(obj)
                for (kind, ns, _), obj in sorted(self.fake.objects.items())
                if kind == plural and (namespace is None or ns == namespace)
            ]
            rv = str(self.fake.resource_version)
        for item in items:  # a real server omits these on list items
            item.pop("apiVersion", None)
            item.pop("kind", None)
        self._send_json(
            200,
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "List",
                "metadata": {"resourceVersion": rv},
                "items": items,
            },
        )

    def _chunk(self, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode() + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _watch(self, plural: str, namespace: str | None, query: dict[str, list[str]]) -> None:
        fake = self.fake
        since = int(query.get("resourceVersion", ["0"])[0] or 0)
        timeout = float(query.get("timeoutSeconds", ["30"])[0])
        deadline = time.monotonic() + timeout
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            while True:
                with fake.cond:
                    if since < fake.oldest_watchable:
                        gone = self._status(410, "Expired", f"too old resource version: {since}")
                        self._chunk({"type": "ERROR", "object": gone})
                        break
                    pending = [
                        (rv, kind, obj)
                        for rv, kind, of, obj in fake.events
                        if rv > since
                        and of == plural
                        and (namespace is None or obj["metadata"]["namespace"] == namespace)
                    ]
                    if not pending:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0 or fake.stopping:
                            break
                        fake.cond.wait(min(remaining, 0.2))
                        continue
                for rv, kind, obj in pending:
                    self._chunk({"type": kind, "object": obj})
                    since = rv
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass  # the client went away (a stopped watch)
        self.close_connection = True

    def do_PATCH(self) -> None:
        match, _ = self._route()
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        record = {
            "method": "PATCH",
            "path": self.path,
            "content_type": self.headers.get("Content-Type"),
            "name": match["name"] if match else None,
            "plural": match["plural"] if match else None,
            "body": body,
            "agent": self.headers.get("User-Agent", ""),
        }
        self.fake.requests.append(record)
        if not self._authorized():
            return
        if match is None or not match["name"] or not match["status"]:
            self._send_json(405, self._status(405, "MethodNotAllowed", self.path))
            return
        if record["content_type"] != "application/merge-patch+json":
            self._send_json(415, self._status(415, "UnsupportedMediaType", "want merge patch"))
            return
        fake = self.fake
        with fake.cond:
            key = (match["plural"], match["ns"], match["name"])
            current = fake.objects.get(key)
            if current is None:
                self._send_json(404, self._status(404, "NotFound", match["name"]))
                return
            obj = copy.deepcopy(current)
            # The status subresource applies the status part of the patch and nothing else.
            obj["status"] = merge_patch(obj.get("status") or {}, body.get("status") or {})
            fake._store(key, obj, "MODIFIED")
            result = copy.deepcopy(obj)
        self._send_json(200, result)


TOKEN = "test-token"


def client_for(fake: FakeKubeApi, user_agent: str | None = None) -> Any:
    """A kubernetes ApiClient pointed at the fake with its token; the fake sees `user_agent`
    (one replica's client told from another's)."""
    from kubernetes import client

    configuration = client.Configuration(host=fake.url)
    configuration.api_key = {"BearerToken": fake.token}
    configuration.api_key_prefix = {"BearerToken": "Bearer"}
    api_client = client.ApiClient(configuration)
    if user_agent is not None:
        api_client.user_agent = user_agent
    return api_client
