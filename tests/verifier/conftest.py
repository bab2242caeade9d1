"""Fixtures of the verifier tests: the embedding endpoint as the protocol double, and a small knowledge base."""
from __future__ import annotations

import pytest

from devservices.embedding_double import run_embedding_double

# The double speaks for the e5 profile (384 dimensions): small vectors keep the tests fast.
DOUBLE_MODEL = "intfloat/multilingual-e5-small"


@pytest.fixture(scope="module")
def double_server():
    with run_embedding_double(dimensions=384, model=DOUBLE_MODEL, hang_seconds=2.0) as double:
        yield double


@pytest.fixture
def embedding_double(settings, double_server):
    """The configured endpoint is the double (no faults, counters zeroed); clients start fresh."""
    from embeddings.client import reset_client

    double_server.reset()
    settings.EMBEDDING_BASE_URL = double_server.base_url
    settings.EMBEDDING_MODEL = DOUBLE_MODEL
    settings.EMBEDDING_DIMENSIONS = None
    settings.EMBEDDING_TIMEOUT_SECONDS = 1.0
    settings.EMBEDDING_MAX_RETRIES = 0
    reset_client()
    yield double_server
    double_server.reset()
    reset_client()


@pytest.fixture
def knowledge_base(embedding_double):
    """Nomenclature lines indexed through the double: a description equal to a line's text matches it exactly.

    The double's vectors carry no meaning (different texts are nearly orthogonal), so these tests check
    the system around the recommendation, not its quality.
    """
    from verifier.services import index_knowledge_entries

    from .factories import make_hs_code

    lines = {
        "851762": "machines for the reception and transmission of voice, images or other data",
        "610910": "t-shirts, singlets and other vests of cotton, knitted",
        "090210": "green tea in immediate packings of a content not exceeding 3 kg",
        "420221": "handbags with outer surface of leather",
    }
    hs_lines = {code: make_hs_code(code, text) for code, text in lines.items()}
    for code in {code[:4] for code in lines} | {code[:2] for code in lines}:
        make_hs_code(code, f"heading {code}")
    entry_ids = [line.entries.get().pk for line in hs_lines.values()]
    index_knowledge_entries(entry_ids=entry_ids)
    return lines
