"""A reranker double: `POST /v1/rerank` on loopback, scoring documents by character-bigram overlap with the query.

Deterministic and meaning-blind, like the embedding double: tests of wiring and faults use it, never tests
of quality. It answers in SGLang's shape (a JSON list, best first) or Cohere's ({"results": [...]}).
"""
from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def bigram_overlap(query: str, document: str) -> float:
    def bigrams(text: str) -> set[str]:
        text = text.lower()
        return {text[position:position + 2] for position in range(len(text) - 1)}

    left, right = bigrams(query), bigrams(document)
    return len(left & right) / len(left | right) if left | right else 0.0


class RerankerDouble:
    def __init__(self) -> None:
        self.base_url = ""
        self.shape = "sglang"  # or "cohere"
        self.failure: str | None = None  # "503", "duplicate_index", "nan"
        self.requests: list[dict] = []


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the stdlib's signature
        pass

    def do_POST(self) -> None:
        double = self.server.double
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        double.requests.append(body)
        if self.path.rstrip("/") != "/v1/rerank":
            return self._send(404, {"error": f"no route {self.path}"})
        if double.failure == "503":
            return self._send(503, {"error": "reranker restarting"})
        scored = [{"index": index, "score": bigram_overlap(body["query"], document)}
                  for index, document in enumerate(body["documents"])]
        scored.sort(key=lambda item: -item["score"])
        if double.failure == "duplicate_index" and len(scored) > 1:
            scored[1]["index"] = scored[0]["index"]
        if double.failure == "nan":
            scored[0]["score"] = float("nan")
        if double.shape == "cohere":
            return self._send(200, {"results": [{"index": item["index"], "relevance_score": item["score"]}
                                                for item in scored]})
        return self._send(200, scored)

    def _send(self, status: int, payload) -> None:
        body = json.dumps(payload).encode()  # NaN is written as the bare token NaN, as some servers do
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, double: RerankerDouble) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.double = double


@contextlib.contextmanager
def run_reranker_double() -> Iterator[RerankerDouble]:
    double = RerankerDouble()
    server = _Server(double)
    double.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield double
    finally:
        server.shutdown()
        server.server_close()
