"""The embedding client's own http.client transport: kept-alive connections, and when it steps aside for httpx."""
from __future__ import annotations

import json
import socket
import threading

import openai
import pytest

from embeddings.client import DirectEmbeddingsTransport, EmbeddingClient

HEADERS = {"Content-Type": "application/json"}


class OneResponsePerConnection:
    """A server that answers one request per connection, then closes it without saying so (a keep-alive
    timeout on the server's side)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            with connection:
                request = b""
                while b"\r\n\r\n" not in request:
                    request += connection.recv(65536)
                head, _, body = request.partition(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                while len(body) < length:
                    body += connection.recv(65536)
                answer = json.dumps({"echo": json.loads(body)}).encode()
                connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                   b"Content-Length: %d\r\n\r\n%s" % (len(answer), answer))

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def closing_server():
    server = OneResponsePerConnection()
    yield server
    server.close()


def test_it_sends_again_on_a_new_connection_when_the_kept_alive_one_was_closed(closing_server):
    transport = DirectEmbeddingsTransport(f"http://127.0.0.1:{closing_server.port}/v1/embeddings", headers=HEADERS)
    for number in range(3):
        assert json.loads(transport.post({"input": [str(number)]}, timeout=5)) == {"echo": {"input": [str(number)]}}
    assert closing_server.connections == 3


def test_it_reports_a_refused_connection_as_the_sdk_would():
    with socket.create_server(("127.0.0.1", 0)) as unused:
        port = unused.getsockname()[1]
    transport = DirectEmbeddingsTransport(f"http://127.0.0.1:{port}/v1/embeddings", headers=HEADERS)
    with pytest.raises(openai.APIConnectionError):
        transport.post({"input": ["x"]}, timeout=1)


def test_it_leaves_https_and_proxied_endpoints_to_httpx(monkeypatch):
    assert DirectEmbeddingsTransport.for_url("https://embed.example/v1/embeddings", headers=HEADERS) is None
    assert DirectEmbeddingsTransport.for_url("http://127.0.0.1:9/v1/embeddings", headers=HEADERS) is not None
    monkeypatch.setenv("http_proxy", "http://proxy.example:3128")
    monkeypatch.setenv("no_proxy", "localhost")
    assert DirectEmbeddingsTransport.for_url("http://embed.example/v1/embeddings", headers=HEADERS) is None
    assert DirectEmbeddingsTransport.for_url("http://localhost:9/v1/embeddings", headers=HEADERS) is not None


def test_threads_posting_at_once_each_get_their_own_vectors(embedding_double):
    client = EmbeddingClient(base_url=embedding_double.base_url, model=embedding_double.model)
    texts = ["bolt", "shirt", "earphone", "tyre"]
    results = {}

    def embed(text: str) -> None:
        results[text] = client.fetch_document_vectors([text])[0]

    threads = [threading.Thread(target=embed, args=(text,)) for text in texts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    expected = embedding_double.vectors_for(texts)
    assert all(abs(float(results[text] @ expected[number]) - 1) < 1e-5 for number, text in enumerate(texts))
