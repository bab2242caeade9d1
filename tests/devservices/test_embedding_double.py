"""The protocol double itself: the API shape other tests and benchmarks rely on."""
from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import numpy as np


def post_embeddings(double, payload: dict) -> dict:
    request = urllib.request.Request(
        double.base_url + "/embeddings", data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def test_it_returns_the_same_unit_vector_for_the_same_text(embedding_double):
    body = post_embeddings(embedding_double, {"model": "m", "input": ["alpha", "beta", "alpha"]})
    vectors = np.array([item["embedding"] for item in sorted(body["data"], key=lambda item: item["index"])])
    assert vectors.shape == (3, 1024)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.allclose(vectors[0], vectors[2])
    assert abs(float(vectors[0] @ vectors[1])) < 0.2
    assert embedding_double.texts_embedded == 3


def test_lexical_vectors_put_texts_that_share_words_close_and_all_texts_in_one_cone():
    from devservices.embedding_double import run_embedding_double

    texts = ["cotton knitted sweater", "knitted cotton sweater for women", "frozen shrimp", "棉制针织套衫",
             "棉制针织衫"]
    with run_embedding_double(dimensions=384, geometry="lexical") as double:
        body = post_embeddings(double, {"model": "m", "input": texts, "encoding_format": "base64"})
        vectors = np.stack([np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4")
                            for item in sorted(body["data"], key=lambda item: item["index"])])
        assert np.allclose(vectors, double.vectors_for(texts), atol=1e-6)  # the same text, the same vector
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > 0.9 > similarity[0, 2]  # shared words (in any order) make near neighbours
    assert similarity[3, 4] > similarity[3, 2]
    # A common direction, as real models have: unrelated texts are not orthogonal.
    assert 0.6 < similarity[0, 2] < 0.9


def test_it_accepts_a_single_string_and_base64(embedding_double):
    body = post_embeddings(embedding_double, {"model": "m", "input": "alpha", "encoding_format": "base64"})
    vector = np.frombuffer(base64.b64decode(body["data"][0]["embedding"]), dtype="<f4")
    assert np.allclose(vector, embedding_double.vectors_for(["alpha"])[0])


def test_it_cuts_to_the_requested_dimensions(embedding_double):
    body = post_embeddings(embedding_double, {"model": "m", "input": ["alpha"], "dimensions": 256})
    vector = np.array(body["data"][0]["embedding"])
    assert vector.shape == (256,)
    assert abs(np.linalg.norm(vector) - 1.0) < 1e-5


def test_it_answers_models_and_health(embedding_double):
    with urllib.request.urlopen(embedding_double.base_url + "/models", timeout=5) as response:
        assert json.loads(response.read())["data"][0]["id"] == "Qwen/Qwen3-Embedding-0.6B"
    health_url = embedding_double.base_url.removesuffix("/v1") + "/health"
    with urllib.request.urlopen(health_url, timeout=5) as response:
        assert response.status == 200
    embedding_double.set_healthy(False)
    try:
        urllib.request.urlopen(health_url, timeout=5)
        raise AssertionError("health should answer 503")
    except urllib.error.HTTPError as error:
        assert error.code == 503


def test_it_fails_the_requested_number_of_times_then_recovers(embedding_double):
    embedding_double.fail_next("500", times=2)
    for _ in range(2):
        try:
            post_embeddings(embedding_double, {"model": "m", "input": ["alpha"]})
            raise AssertionError("expected a 500")
        except urllib.error.HTTPError as error:
            assert error.code == 500
    assert post_embeddings(embedding_double, {"model": "m", "input": ["alpha"]})["data"]
    assert embedding_double.texts_embedded == 1
