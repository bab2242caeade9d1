"""A small bilingual FAQ library, embedded by the real CPU model, with a calibrated answer threshold."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
from django.conf import settings

from embeddings.client import reset_client
from embeddings.store import active_space, forget_active_space
from faq import services
from faq.models import CalibratedThreshold, Faq, FaqTranslation

# e5-small (CPU) cosines for these texts: paraphrases 0.86-0.94, unrelated below 0.82 (calibrated value below).
E5_FAQ_THRESHOLD = 0.85

LIBRARY_ROWS = [
    {"faq_id": "phone", "question": "如何修改绑定的手机号码",
     "answer": "登录后进入“账户设置 > 手机号”，验证旧号码后即可更换。", "category": "account", "language": "zh"},
    {"faq_id": "shipping", "question": "订单超过48小时未发货怎么办",
     "answer": "请在订单详情页点击“催发货”，我们会在24小时内处理。", "category": "orders", "language": "zh"},
    {"faq_id": "password", "question": "How do I reset my password?",
     "answer": "Use 'Forgot password' on the sign-in page.", "category": "account", "language": "en"},
    {"faq_id": "hours", "question": "What are your opening hours?", "answer": "Monday to Saturday, 9:00 to 18:00.",
     "category": "general", "language": "en"},
    {"faq_id": "refund", "question": "How can I get a refund for a returned item?",
     "answer": "Refunds are paid within 5 days of the item reaching our warehouse.", "category": "orders",
     "language": "en"},
]


@pytest.fixture(autouse=True)
def fresh_embedding_client():
    reset_client()
    yield
    reset_client()


SAMPLE_FAQS = Path(settings.BASE_DIR) / "sample_data" / "data" / "faqs.csv"
# For the sample library with the CPU model: its paraphrases score 0.95-0.97 and "where is my parcel"
# 0.85 against the nearest FAQ (late shipping), which is not its answer.
SAMPLE_THRESHOLD = 0.92


def calibrate(value: float, language_pair: str = "") -> None:
    """What `evaluate_faq --save-threshold` stores for the active space."""
    CalibratedThreshold.objects.update_or_create(space=active_space(), task="faq", language_pair=language_pair,
                                                 defaults={"value": value})


@pytest.fixture
def sample_library(db) -> dict[str, Faq]:
    """sample_data/data/faqs.csv as `make run` loads it: each FAQ in Chinese with its English translation."""
    with open(SAMPLE_FAQS, encoding="utf-8") as handle:
        services.import_faqs(rows=list(csv.DictReader(handle)))
    services.index_wordings()
    return {faq.external_id: faq for faq in Faq.objects.all()}


@pytest.fixture
def faq_library(db) -> dict[str, Faq]:
    services.import_faqs(rows=LIBRARY_ROWS)
    services.index_wordings()
    CalibratedThreshold.objects.update_or_create(space=active_space(), task="faq",
                                                 defaults={"value": E5_FAQ_THRESHOLD})
    faqs = {faq.external_id: faq for faq in Faq.objects.all()}
    FaqTranslation.objects.create(faq=faqs["phone"], language="en",
                                  answer="Sign in, open Account settings > Phone number, verify the old number.")
    return faqs


class EndpointSwitch:
    """Points the active space's queries at a loopback port nobody listens on (a real connection refusal), and back."""

    def __init__(self, settings) -> None:
        from bench.common import free_port

        self.settings = settings
        self.reachable = settings.EMBEDDING_BASE_URL
        self.dead = f"http://127.0.0.1:{free_port()}/v1"

    def _point_at(self, url: str) -> None:
        from embeddings.models import EmbeddingSpace

        self.settings.EMBEDDING_BASE_URL = url
        EmbeddingSpace.objects.filter(id=active_space().id).update(endpoint_url=url)
        forget_active_space()
        reset_client()

    def down(self) -> None:
        self.settings.EMBEDDING_MAX_RETRIES = 0
        self._point_at(self.dead)

    def up(self) -> None:
        self._point_at(self.reachable)


@pytest.fixture
def embedding_endpoint(db, settings) -> EndpointSwitch:
    return EndpointSwitch(settings)
