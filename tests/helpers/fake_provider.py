"""A fake model provider on loopback that speaks both wire protocols for real.

``POST /v1/chat/completions`` answers with OpenAI chat-completion SSE chunks (``data: {...}`` …
``data: [DONE]``), ``POST /v1/messages`` with Anthropic message events. Each request takes the next
behaviour from a per-test queue (a reply, an HTTP error, a hang, a broken stream, or a stream
shape replayed byte for byte) and is recorded, so tests can assert what the real SDK clients
sent. This is the provider edge: the only fake.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

#: A hang waits at most this long for the test to end, so a forgotten hang cannot wedge the run.
MAX_HANG_S = 10.0


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]
    id: str | None = None


@dataclass(frozen=True)
class Reply:
    """A streamed reply: optional thinking, text, tool calls, and the usage to report."""

    text: str = ""
    thinking: str = ""
    signature: str = "sig-1"
    tool_calls: tuple[ToolCall, ...] = ()
    input_tokens: int = 11
    output_tokens: int = 7
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    chunk_chars: int = 4
    finish: str | None = None  # the wire stop reason; derived from the content when None


@dataclass(frozen=True)
class Status:
    """An HTTP error response in the API's error format."""

    status: int
    error_type: str | None = None
    message: str = "scripted failure"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Hang:
    """Stop answering: before the response headers (``after_events=None``) or after some events."""

    after_events: int | None = None


@dataclass(frozen=True)
class Malformed:
    """A broken stream: ``bad_json`` mid-stream, ``truncated`` (clean end without the final
    events), or ``cut`` (the connection drops in the middle of a chunk)."""

    mode: Literal["bad_json", "truncated", "cut"]
    reply: Reply = Reply(text="partial reply")


@dataclass(frozen=True)
class StreamError:
    """A 200 stream that reports an error part way: Anthropic's ``event: error``, or an
    OpenAI-compatible ``data: {"error": ...}`` chunk."""

    error_type: str
    message: str = "scripted failure mid-stream"
    after_events: int = 3
    reply: Reply = Reply(text="partial reply")


@dataclass(frozen=True)
class Raw:
    """A 200 event stream sent byte for byte as given: a stream shape a real server was seen to
    send, replayed exactly. Each SSE frame (up to and including its blank line) goes out as one
    HTTP chunk, as a streaming server writes it."""

    body: bytes


Behaviour = Reply | Status | Hang | Malformed | StreamError | Raw


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


def _chunks(text: str, size: int) -> Iterator[str]:
    for i in range(0, len(text), max(1, size)):
        yield text[i : i + size]


# ---- OpenAI chat completions ---------------------------------------------------------------


def openai_events(reply: Reply, model: str, include_usage: bool) -> list[str]:
    """The ``data:`` payloads of one streamed chat completion, ``[DONE]`` last."""
    out: list[dict[str, Any]] = []

    def chunk(delta: dict[str, Any], finish: str | None = None) -> None:
        out.append(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
        )

    chunk({"role": "assistant", "content": ""})
    for piece in _chunks(reply.thinking, reply.chunk_chars):
        chunk({"reasoning_content": piece})
    for piece in _chunks(reply.text, reply.chunk_chars):
        chunk({"content": piece})
    for i, call in enumerate(reply.tool_calls):
        head = {"name": call.name, "arguments": ""}
        chunk({"tool_calls": [{"index": i, "id": call.id or f"call_{i}", "type": "function",
                               "function": head}]})  # fmt: skip
        for piece in _chunks(json.dumps(call.arguments), reply.chunk_chars):
            chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
    finish = reply.finish or ("tool_calls" if reply.tool_calls else "stop")
    chunk({}, finish)
    if include_usage:
        prompt = reply.input_tokens + reply.cache_read_tokens
        out.append(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": model,
                "choices": [],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": reply.output_tokens,
                    "total_tokens": prompt + reply.output_tokens,
                    "prompt_tokens_details": {"cached_tokens": reply.cache_read_tokens},
                },
            }
        )
    return [f"data: {json.dumps(c)}\n\n" for c in out] + ["data: [DONE]\n\n"]


def openai_error_body(status: Status) -> dict[str, Any]:
    default = {429: "rate_limit_exceeded", 401: "invalid_api_key", 400: "invalid_request_error"}
    kind = status.error_type or default.get(status.status, "server_error")
    return {"error": {"message": status.message, "type": kind, "code": kind, "param": None}}


# ---- Anthropic messages --------------------------------------------------------------------


def anthropic_events(reply: Reply, model: str) -> list[str]:
    """The ``event:``/``data:`` frames of one streamed message, ``message_stop`` last."""
    out: list[tuple[str, dict[str, Any]]] = []
    usage_start = {
        "input_tokens": reply.input_tokens,
        "output_tokens": 1,
        "cache_read_input_tokens": reply.cache_read_tokens,
        "cache_creation_input_tokens": reply.cache_write_tokens,
    }
    message = {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": model,
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage_start,
    }
    out.append(("message_start", {"type": "message_start", "message": message}))
    out.append(("ping", {"type": "ping"}))
    index = 0

    def block(start: dict[str, Any], deltas: list[dict[str, Any]]) -> None:
        nonlocal index
        out.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": start},
            )
        )
        for d in deltas:
            out.append(
                ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})
            )
        out.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
        index += 1

    if reply.thinking:
        deltas = [{"type": "thinking_delta", "thinking": p} for p in _chunks(reply.thinking, 4)]
        deltas.append({"type": "signature_delta", "signature": reply.signature})
        block({"type": "thinking", "thinking": "", "signature": ""}, deltas)
    if reply.text:
        block(
            {"type": "text", "text": ""},
            [{"type": "text_delta", "text": p} for p in _chunks(reply.text, reply.chunk_chars)],
        )
    for i, call in enumerate(reply.tool_calls):
        block(
            {"type": "tool_use", "id": call.id or f"toolu_{i}", "name": call.name, "input": {}},
            [
                {"type": "input_json_delta", "partial_json": p}
                for p in _chunks(json.dumps(call.arguments), reply.chunk_chars)
            ],
        )
    finish = reply.finish or ("tool_use" if reply.tool_calls else "end_turn")
    out.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": finish, "stop_sequence": None},
                "usage": {"output_tokens": reply.output_tokens},
            },
        )
    )
    out.append(("message_stop", {"type": "message_stop"}))
    return [f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in out]


def anthropic_error_body(status: Status) -> dict[str, Any]:
    default = {
        429: "rate_limit_error",
        529: "overloaded_error",
        401: "authentication_error",
        400: "invalid_request_error",
    }
    kind = status.error_type or default.get(status.status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": status.message}}


# ---- the server ----------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {"_raw": raw.decode("utf-8", "replace")}
        fake = self.server.fake
        headers = {k.lower(): v for k, v in self.headers.items()}
        fake._record(RecordedRequest("POST", self.path, headers, body))
        behaviour = fake._next()
        is_openai = self.path.rstrip("/").endswith("/chat/completions")
        if not is_openai and not self.path.rstrip("/").endswith("/messages"):
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            return
        # The client may have given up (a timeout test): then there is nobody to answer.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._answer(behaviour, body, is_openai)

    def _answer(self, behaviour: Behaviour | None, body: dict[str, Any], is_openai: bool) -> None:
        model = str(body.get("model", "fake-model"))
        if behaviour is None:
            msg = "fake provider: the test queued no behaviour for this request"
            self._json(500, {"error": {"message": msg, "type": "server_error"}})
            return
        if isinstance(behaviour, Status):
            payload = openai_error_body(behaviour) if is_openai else anthropic_error_body(behaviour)
            self._json(behaviour.status, payload, behaviour.headers)
            return
        if isinstance(behaviour, Hang) and behaviour.after_events is None:
            self.server.fake._released.wait(MAX_HANG_S)
            return
        if isinstance(behaviour, Raw):
            self._stream_headers()
            for frame in behaviour.body.split(b"\n\n")[:-1]:
                self._chunk(frame + b"\n\n")
            if not behaviour.body.endswith(b"\n\n"):  # a tail without its blank line, as sent
                self._chunk(behaviour.body.rsplit(b"\n\n", 1)[-1])
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            return
        reply = behaviour if isinstance(behaviour, Reply) else Reply()
        if isinstance(behaviour, Malformed | StreamError):
            reply = behaviour.reply
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        events = (
            openai_events(reply, model, include_usage)
            if is_openai
            else anthropic_events(reply, model)
        )
        self._stream_headers()
        if isinstance(behaviour, Hang):
            for e in events[: behaviour.after_events]:
                self._chunk(e.encode())
            self.server.fake._released.wait(MAX_HANG_S)
            return
        if isinstance(behaviour, StreamError):
            error = {"type": behaviour.error_type, "message": behaviour.message}
            frame = (
                f"data: {json.dumps({'error': error})}\n\n"
                if is_openai
                else f"event: error\ndata: {json.dumps({'type': 'error', 'error': error})}\n\n"
            )
            events = [*events[: behaviour.after_events], frame]
        if isinstance(behaviour, Malformed):
            half = max(2, len(events) // 2)
            if behaviour.mode == "bad_json":
                bad = 'data: {"choices": [{"delta": {"content": "oops"\n\n'
                if not is_openai:
                    bad = 'event: content_block_delta\ndata: {"type": "content_block_delta", \n\n'
                events = [*events[:half], bad, *events[half:]]
            elif behaviour.mode == "truncated":
                events = events[:half]
            else:  # cut: announce a chunk longer than what we send, then close
                for e in events[:half]:
                    self._chunk(e.encode())
                self.wfile.write(b'400\r\ndata: {"choi')
                self.wfile.flush()
                return
        for e in events:
            self._chunk(e.encode())
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _stream_headers(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeProviderServer


class FakeProviderServer:
    """Start with ``with FakeProviderServer() as fake:``; queue behaviours; read ``requests``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque[Behaviour] = deque()
        self._released = threading.Event()
        self.requests: list[RecordedRequest] = []
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def openai_base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def anthropic_base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def queue(self, *behaviours: Behaviour) -> None:
        with self._lock:
            self._queue.extend(behaviours)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def _next(self) -> Behaviour | None:
        with self._lock:
            return self._queue.popleft() if self._queue else None

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def start(self) -> FakeProviderServer:
        self._thread.start()
        return self

    def close(self) -> None:
        if self._released.is_set():
            return
        self._released.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeProviderServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"<FakeProviderServer 127.0.0.1:{self.port} queued={self.pending} "
            f"requests={len(self.requests)}>"
        )
