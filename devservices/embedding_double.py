"""A protocol double of the embedding endpoint: a real HTTP server on loopback speaking SGLang's OpenAI API.

It answers `POST /v1/embeddings` (string or list input, `encoding_format` float or
base64, `dimensions`), `GET /v1/models` and `GET /health`, with deterministic unit
vectors seeded by the text (the same text always gets the same vector; by default
different texts are nearly orthogonal, with `geometry="lexical"` texts that share
words are close), and can be told at runtime to be slow or to fail in each way a
real endpoint does. Fault tests and throughput benchmarks use it; tests
of meaning use the real model.

In tests::

    with run_embedding_double(dimensions=1024) as double:
        client = EmbeddingClient(base_url=double.base_url, model=double.model)
        double.fail_next("500", times=2)
        double.set_latency(0.05)
        double.texts_embedded  # texts it computed vectors for

Standalone (benchmarks): `python -m devservices.embedding_double --port 8090 --dimensions 1024 [--geometry lexical]`.

This module imports neither Django nor the rest of the app (only common.scripts), so it can run anywhere.
"""
from __future__ import annotations

import argparse
import base64
import collections
import contextlib
import hashlib
import json
import random
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from common.scripts import CJK_CHARACTER_CLASS

DEFAULT_MODEL = "Qwen/Qwen3-Embedding-0.6B"
DEFAULT_DIMENSIONS = 1024

# Every way the double can misbehave, for `fail_next(kind)`.
FAULT_KINDS = frozenset({
    "500",              # HTTP 500 with an OpenAI-style error body
    "503",              # HTTP 503 (SGLang restarting)
    "429",              # HTTP 429 rate limited
    "400",              # HTTP 400: a request the server refuses (must not be retried)
    "timeout",          # accept the request, then hang without answering until hang_seconds pass
    "disconnect",       # close the connection without any response
    "wrong_count",      # one embedding fewer than inputs
    "wrong_dimension",  # vectors one dimension short of what was asked
    "nan",              # a NaN inside the first vector
    "zero_vector",      # the first vector all zeros
    "duplicate_index",  # two items claim the same index (and one index is missing)
    "shuffle",          # items in random order, each index once: legal, the client must order by index
    "bad_json",         # HTTP 200 with a body that is not JSON
})

# Vectors are built from two fixed random tables so no per-text random generation is needed:
# vector(text) = unit_rows[a] * sign_rows[b], with (a, b) from a hash of the text. Rows that share
# only a or only b are still nearly orthogonal, and there are POOL_ROWS**2 distinct vectors.
POOL_ROWS = 2048
POOL_SEED = 20261123
ENCODED_CACHE_BYTES = 192 * 2**20
# "random": unrelated unit vectors per text (nearly orthogonal, the hardest case for an HNSW search).
# "lexical": texts that share words are close, and all texts share one direction, as real embeddings do.
GEOMETRIES = frozenset({"random", "lexical"})
# Weight of the shared direction: unrelated texts then meet at a cosine of about 0.79, as with
# multilingual-e5-small (mean cosine of hsbench descriptions to nomenclature lines: e5 0.789, lexical 0.791).
LEXICAL_COMMON_SHARE = 0.66
_TOKEN = re.compile(f"[a-z0-9]+|{CJK_CHARACTER_CLASS}{{1,2}}")


@dataclass(frozen=True)
class ReceivedRequest:
    """What the double was asked, so tests can check prompts, sides and dimensions."""

    model: str
    inputs: list[str]
    encoding_format: str
    dimensions: int | None
    input_type: str | None


class VectorTable:
    """Deterministic unit vectors for texts, cheap enough for tens of thousands of texts a second."""

    def __init__(self, native_dimensions: int, *, geometry: str = "random") -> None:
        if geometry not in GEOMETRIES:
            raise ValueError(f"unknown geometry {geometry!r}; known: {sorted(GEOMETRIES)}")
        self.geometry = geometry
        rng = np.random.default_rng(POOL_SEED)
        rows = POOL_ROWS if native_dimensions <= 2048 else POOL_ROWS // 2
        unit = rng.standard_normal((rows, native_dimensions), dtype=np.float32)
        self.unit_rows = unit / np.linalg.norm(unit, axis=1, keepdims=True)
        self.sign_rows = np.where(rng.random((rows, native_dimensions)) < 0.5, -1.0, 1.0).astype(np.float32)
        common = rng.standard_normal(native_dimensions).astype(np.float32)
        self.common_row = common / np.linalg.norm(common)
        self.rows = rows
        self.native_dimensions = native_dimensions
        # Encoded rows of recent texts: a benchmark's repeated rounds then cost the double almost nothing.
        self.max_encoded = max(1, ENCODED_CACHE_BYTES // (native_dimensions * 6))
        self._encoded: dict[tuple[str, int], str] = {}
        self._encoded_lock = threading.Lock()

    def base64_rows(self, texts: list[str], dimensions: int) -> list[str]:
        """The base64 float32 encoding of each text's vector, remembered for repeated texts (benchmark rounds)."""
        rows: list[str | None] = [self._encoded.get((text, dimensions)) for text in texts]
        missing = [position for position, row in enumerate(rows) if row is None]
        if missing:
            matrix = self.vectors([texts[position] for position in missing], dimensions).astype("<f4", copy=False)
            with self._encoded_lock:
                for row_number, position in enumerate(missing):
                    rows[position] = base64.b64encode(matrix[row_number].tobytes()).decode("ascii")
                    self._encoded[(texts[position], dimensions)] = rows[position]
                while len(self._encoded) > self.max_encoded:
                    del self._encoded[next(iter(self._encoded))]  # oldest first
        return rows

    def vectors(self, texts: list[str], dimensions: int) -> np.ndarray:
        if self.geometry == "lexical":
            return self._lexical_vectors(texts, dimensions)
        first, second = self._rows_of([text.encode("utf-8") for text in texts])
        matrix = self.unit_rows[first, :dimensions] * self.sign_rows[second, :dimensions]
        if dimensions != self.native_dimensions:  # Matryoshka cut: re-normalise like the server does
            matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
        return matrix

    def _rows_of(self, keys: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
        first, second = np.empty(len(keys), dtype=np.int64), np.empty(len(keys), dtype=np.int64)
        for position, key in enumerate(keys):
            digest = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little")
            first[position], second[position] = digest % self.rows, (digest >> 32) % self.rows
        return first, second

    def _lexical_vectors(self, texts: list[str], dimensions: int) -> np.ndarray:
        """Texts that share words get close vectors: the normalised sum of one random vector per word
        (CJK: per character bigram) plus a direction all texts share, as a real model's vectors do."""
        token_lists = [_TOKEN.findall(text.casefold()) or [""] for text in texts]
        tokens = [token for token_list in token_lists for token in token_list]
        first, second = self._rows_of([token.encode("utf-8") for token in tokens])
        token_rows = self.unit_rows[first, :dimensions] * self.sign_rows[second, :dimensions]
        starts = np.cumsum([0] + [len(token_list) for token_list in token_lists[:-1]])
        matrix = np.add.reduceat(token_rows, starts, axis=0)
        matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
        matrix = matrix * (1 - LEXICAL_COMMON_SHARE) + self.common_row[:dimensions] * LEXICAL_COMMON_SHARE
        return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


class EmbeddingDouble:
    """The double's state and controls; the HTTP handler reads it on every request."""

    def __init__(
        self, *, model: str = DEFAULT_MODEL, dimensions: int = DEFAULT_DIMENSIONS, honour_dimensions: bool = True,
        reject_dimensions: bool = False, hang_seconds: float = 30.0, keep_requests: int = 200,
        geometry: str = "random",
    ) -> None:
        self.model = model
        self.native_dimensions = dimensions
        # False: behave like an SGLang launched without matryoshka_dimensions, which ignores `dimensions`.
        self.honour_dimensions = honour_dimensions
        # True: refuse `dimensions` with a 400, as vLLM and SGLang do for a model not configured as Matryoshka.
        self.reject_dimensions = reject_dimensions
        self.hang_seconds = hang_seconds
        self.table = VectorTable(dimensions, geometry=geometry)
        self.base_url = ""
        self._lock = threading.Lock()
        self._faults: collections.deque[str] = collections.deque()
        self._latency = 0.0
        self._latency_per_text = 0.0
        self._healthy = True
        self._stopping = threading.Event()
        self.texts_embedded = 0
        self.embedding_requests = 0
        self.requests: collections.deque[ReceivedRequest] = collections.deque(maxlen=keep_requests)

    # --- controls ---------------------------------------------------------------
    def fail_next(self, kind: str, *, times: int = 1) -> None:
        """The next `times` embedding requests fail this way (queued after faults already set)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; known: {sorted(FAULT_KINDS)}")
        with self._lock:
            self._faults.extend([kind] * times)

    def fail_always(self, kind: str) -> None:
        """Every embedding request fails this way until reset() (a dead endpoint)."""
        self.fail_next(kind, times=1_000_000)

    def set_latency(self, seconds: float, *, per_text: float = 0.0) -> None:
        """Each embedding request waits this long before answering (a busy GPU), plus `per_text` per input
        (a busy CPU server, whose time grows with the batch)."""
        self._latency = seconds
        self._latency_per_text = per_text

    def set_healthy(self, healthy: bool) -> None:
        """What GET /health answers: 200 or 503."""
        self._healthy = healthy

    def reset(self) -> None:
        """No faults, no latency, counters back to zero."""
        with self._lock:
            self._faults.clear()
            self._latency, self._latency_per_text, self._healthy = 0.0, 0.0, True
            self.texts_embedded = self.embedding_requests = 0
            self.requests.clear()

    @property
    def pending_faults(self) -> int:
        return len(self._faults)

    def vectors_for(self, texts: list[str], dimensions: int | None = None) -> np.ndarray:
        """The vectors the double serves for these exact inputs (for expected values in tests)."""
        return self.table.vectors(texts, dimensions or self.native_dimensions)

    # --- used by the handler ------------------------------------------------------
    def _next_fault(self) -> str | None:
        with self._lock:
            self.embedding_requests += 1
            return self._faults.popleft() if self._faults else None

    def _count(self, request: ReceivedRequest) -> None:
        with self._lock:
            self.texts_embedded += len(request.inputs)
            self.requests.append(request)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like SGLang behind uvicorn
    # Headers and body go out in separate writes; without this a kept-alive client stalls ~40 ms
    # per request on Nagle + delayed ACK (see field notes).
    disable_nagle_algorithm = True
    server: _DoubleServer

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the stdlib's signature
        pass

    # --- routes -------------------------------------------------------------------
    def do_GET(self) -> None:
        double = self.server.double
        path = self.path.split("?", 1)[0].rstrip("/")
        if path == "/health":
            self._send(200 if double._healthy else 503, b"")
        elif path in ("/v1/models", "/models"):
            self._send_json(200, {"object": "list", "data": [
                {"id": double.model, "object": "model", "owned_by": "embedding-double", "created": 0,
                 "root": double.model, "max_model_len": 32768},
            ]})
        else:
            self._send_error(404, f"no route {self.path}")

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if path not in ("/v1/embeddings", "/embeddings"):
            self._send_error(404, f"no route {self.path}")
            return
        self._embeddings(body)

    def _embeddings(self, body: bytes) -> None:
        double = self.server.double
        fault = double._next_fault()
        if double._latency:
            time.sleep(double._latency)
        if fault in ("500", "503", "429", "400"):
            self._send_error(int(fault), f"injected fault {fault}")
            return
        if fault == "timeout":
            double._stopping.wait(double.hang_seconds)
            self.close_connection = True
            return
        if fault == "disconnect":
            self.close_connection = True
            return
        if fault == "bad_json":
            self._send(200, b"<html>upstream error</html>", content_type="text/html")
            return
        try:
            request = self._parse(body)
        except ValueError as error:
            self._send_error(400, str(error))
            return
        if double._latency_per_text:
            time.sleep(double._latency_per_text * len(request.inputs))
        if request.dimensions is not None and double.reject_dimensions:
            self._send_error(400, f'Model "{double.model}" does not support matryoshka representation, '
                                  "changing output dimensions will lead to poor results.")
            return
        dimensions = request.dimensions if (request.dimensions and double.honour_dimensions) else None
        if dimensions is not None and not 1 <= dimensions <= double.native_dimensions:
            self._send_error(400, f"dimensions must be between 1 and {double.native_dimensions}")
            return
        double._count(request)
        order = list(range(len(request.inputs)))
        if request.encoding_format == "base64" and fault in (None, "shuffle"):
            # The fast path (benchmarks): encoded rows straight from the table's memory of recent texts.
            if fault == "shuffle":
                random.shuffle(order)
            encoded = double.table.base64_rows(request.inputs, dimensions or double.native_dimensions)
            items = ['{"object":"embedding","index":%d,"embedding":"%s"}' % (index, encoded[index]) for index in order]
            self._send(200, self._envelope(request, items), content_type="application/json")
            return
        matrix = double.vectors_for(request.inputs, dimensions)
        if fault == "wrong_count":
            order = order[:-1]
        elif fault == "wrong_dimension":
            matrix = matrix[:, :-1]
        elif fault == "nan":
            matrix[0, 0] = np.nan
        elif fault == "zero_vector":
            matrix[0, :] = 0.0
        elif fault == "shuffle":
            random.shuffle(order)
        indices = list(order)
        if fault == "duplicate_index" and len(indices) > 1:
            indices[1] = indices[0]
        self._send(200, self._render(request, matrix, order, indices), content_type="application/json")

    # --- helpers ------------------------------------------------------------------
    def _parse(self, body: bytes) -> ReceivedRequest:
        try:
            payload = json.loads(body)
        except ValueError as error:
            raise ValueError(f"request body is not JSON: {error}") from error
        if not isinstance(payload, dict):
            raise ValueError("request body must be a JSON object")
        raw_input = payload.get("input")
        inputs = [raw_input] if isinstance(raw_input, str) else raw_input
        if not isinstance(inputs, list) or not inputs or not all(isinstance(text, str) for text in inputs):
            raise ValueError("input must be a string or a non-empty list of strings")
        encoding_format = payload.get("encoding_format") or "float"
        if encoding_format not in ("float", "base64"):
            raise ValueError(f"encoding_format must be float or base64, not {encoding_format!r}")
        dimensions = payload.get("dimensions")
        if dimensions is not None and not isinstance(dimensions, int):
            raise ValueError("dimensions must be an integer")
        return ReceivedRequest(
            model=str(payload.get("model") or ""), inputs=inputs, encoding_format=encoding_format,
            dimensions=dimensions, input_type=payload.get("input_type"),
        )

    def _render(self, request: ReceivedRequest, matrix: np.ndarray, order: list[int], indices: list[int]) -> bytes:
        if request.encoding_format == "base64":
            little_endian = matrix.astype("<f4", copy=False)
            items = [
                '{"object":"embedding","index":%d,"embedding":"%s"}'
                % (index, base64.b64encode(little_endian[row].tobytes()).decode("ascii"))
                for row, index in zip(order, indices)
            ]
        else:
            items = [
                '{"object":"embedding","index":%d,"embedding":%s}' % (index, json.dumps(matrix[row].tolist()))
                for row, index in zip(order, indices)
            ]
        return self._envelope(request, items)

    def _envelope(self, request: ReceivedRequest, items: list[str]) -> bytes:
        tokens = sum(len(text) // 4 + 1 for text in request.inputs)
        return (
            '{"object":"list","data":[' + ",".join(items) + '],"model":' + json.dumps(self.server.double.model)
            + ',"usage":{"prompt_tokens":%d,"total_tokens":%d}}' % (tokens, tokens)
        ).encode("ascii")

    def _send_error(self, status: int, message: str) -> None:
        kind = "rate_limit_error" if status == 429 else "invalid_request_error" if status < 500 else "server_error"
        self._send_json(status, {"object": "error", "error": {"message": message, "type": kind, "code": status}})

    def _send_json(self, status: int, payload: dict) -> None:
        self._send(status, json.dumps(payload).encode("utf-8"), content_type="application/json")

    def _send(self, status: int, body: bytes, *, content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if status == 429:
            self.send_header("Retry-After", "0")
        self.end_headers()
        self.wfile.write(body)


class _DoubleServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], double: EmbeddingDouble) -> None:
        self.double = double
        super().__init__(address, _Handler)


@contextlib.contextmanager
def run_embedding_double(
    *, dimensions: int = DEFAULT_DIMENSIONS, model: str = DEFAULT_MODEL, honour_dimensions: bool = True,
    reject_dimensions: bool = False, hang_seconds: float = 30.0, host: str = "127.0.0.1", port: int = 0,
    geometry: str = "random",
) -> Iterator[EmbeddingDouble]:
    """Serve the double on loopback in a background thread for the duration of the block."""
    double = EmbeddingDouble(model=model, dimensions=dimensions, honour_dimensions=honour_dimensions,
                             reject_dimensions=reject_dimensions, hang_seconds=hang_seconds, geometry=geometry)
    server = _DoubleServer((host, port), double)
    double.base_url = f"http://{host}:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name="embedding-double", daemon=True)
    thread.start()
    try:
        yield double
    finally:
        double._stopping.set()  # release requests hanging in a "timeout" fault
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Embedding endpoint double (SGLang/OpenAI API) on loopback")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--dimensions", type=int, default=DEFAULT_DIMENSIONS)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds each embedding request waits")
    parser.add_argument("--geometry", choices=sorted(GEOMETRIES), default="random",
                        help="random: unrelated texts' vectors are orthogonal; lexical: texts sharing words are close")
    parser.add_argument("--ignore-dimensions", action="store_true",
                        help="ignore the `dimensions` field, like SGLang without matryoshka_dimensions")
    arguments = parser.parse_args(argv)
    double = EmbeddingDouble(model=arguments.model, dimensions=arguments.dimensions,
                             honour_dimensions=not arguments.ignore_dimensions, geometry=arguments.geometry)
    double.set_latency(arguments.latency)
    server = _DoubleServer((arguments.host, arguments.port), double)
    print(f"embedding double: {arguments.model}, {arguments.dimensions} dims, {arguments.geometry} vectors, "
          f"http://{arguments.host}:{server.server_address[1]}/v1", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
