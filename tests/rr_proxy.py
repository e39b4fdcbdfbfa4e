"""A loopback round-robin HTTP proxy for the replica tests: one address in front of several `bentoml serve`
processes, the way any load balancer without stickiness would put them.

Each request goes to the next backend in turn (no affinity of any kind), bodies stream both ways (the request body
is forwarded as it arrives, the response as the backend sends it, so a streamed synthesis stays streamed), and
every request is recorded with the backend that answered it; the answer also carries ``X-RR-Backend`` (the
backend's index) so a test can tell which replica served a given response.

    with RoundRobinProxy([a.url, b.url]) as proxy:
        httpx.get(f"{proxy.url}/readyz")      # backend 0
        httpx.get(f"{proxy.url}/readyz")      # backend 1
        proxy.record                          # [Forwarded(method="GET", path="/readyz", backend=0, status=200), …]

uvicorn serves it in a thread of the test process; httpx forwards.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from served import free_port

# RFC 9110 §7.6.1 connection-specific fields, never forwarded; Host is set by httpx for the backend.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                        "transfer-encoding", "upgrade", "host"})
BACKEND_HEADER = "x-rr-backend"


@dataclass(frozen=True)
class Forwarded:
    method: str
    path: str
    backend: int
    status: int


class RoundRobinProxy:
    def __init__(self, backends: list[str], timeout: float = 120.0) -> None:
        self.backends = list(backends)
        self.port = free_port()
        self.record: list[Forwarded] = []
        self._turns = 0  # requests forwarded so far: the next goes to backends[_turns % len(backends)]
        self._turn_lock = threading.Lock()
        self._timeout = timeout
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._client: httpx.AsyncClient | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def backends_since(self, mark: int) -> set[int]:
        """The backends that answered the requests recorded after ``mark`` (a ``len(proxy.record)``)."""
        return {forwarded.backend for forwarded in self.record[mark:]}

    def peek(self) -> int:
        """The backend the next request will go to."""
        with self._turn_lock:
            return self._turns % len(self.backends)

    def _next_backend(self) -> int:
        with self._turn_lock:
            self._turns += 1
            return (self._turns - 1) % len(self.backends)

    async def _forward(self, request: Request) -> StreamingResponse:
        backend = self._next_backend()
        headers = [(k, v) for k, v in request.headers.raw if k.decode("latin-1").lower() not in HOP_BY_HOP]
        target = request.scope.get("raw_path") or request.url.path.encode()  # as the client encoded it
        if request.scope.get("query_string"):
            target += b"?" + request.scope["query_string"]
        outgoing = self._client.build_request(
            request.method, self.backends[backend] + target.decode("latin-1"), headers=headers,
            content=request.stream() if request.method not in ("GET", "HEAD") else None,
        )
        upstream = await self._client.send(outgoing, stream=True)
        self.record.append(Forwarded(request.method, request.url.path, backend, upstream.status_code))
        answer_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
        answer_headers[BACKEND_HEADER] = str(backend)
        return StreamingResponse(upstream.aiter_raw(), status_code=upstream.status_code, headers=answer_headers,
                                 background=BackgroundTask(upstream.aclose))

    def _app(self) -> Starlette:
        methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
        return Starlette(routes=[Route("/{path:path}", self._forward, methods=methods)])

    def start(self) -> RoundRobinProxy:
        config = uvicorn.Config(self._app(), host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)

        async def serve() -> None:
            self._client = httpx.AsyncClient(timeout=self._timeout)
            try:
                await self._server.serve()
            finally:
                await self._client.aclose()

        self._thread = threading.Thread(target=lambda: asyncio.run(serve()), name="rr-proxy", daemon=True)
        self._thread.start()
        deadline = threading.Event()
        for _ in range(200):
            if self._server.started:
                return self
            deadline.wait(0.025)
        raise TimeoutError("the round-robin proxy did not start within 5 s")

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> RoundRobinProxy:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
