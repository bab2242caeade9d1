"""The pipeline with the real CPU embedding model (the configured endpoint) on a tiny nomenclature."""
from __future__ import annotations

import pytest

from verifier.models import Verdict
from verifier.pipeline import process_pending
from verifier.services import index_knowledge_entries

from .factories import make_hs_code, make_item

pytestmark = pytest.mark.django_db

HEADINGS = {
    "0902": "Tea, whether or not flavoured",
    "6109": "T-shirts, singlets and other vests, knitted or crocheted",
    "8517": "Telephone sets; other apparatus for the transmission or reception of voice, images or other data",
    "4202": "Trunks, suitcases, handbags, wallets and similar containers of leather",
    "0303": "Fish, frozen",
}


def test_it_recommends_the_heading_a_description_means_and_flags_the_wrong_declaration():
    lines = [make_hs_code(code, text) for code, text in HEADINGS.items()]
    index_knowledge_entries(entry_ids=[line.entries.get().pk for line in lines])
    tea = make_item(description_raw="green tea leaves, 500 g bags", declared_code="0902")
    shirt = make_item(description_raw="men's cotton t-shirt, knitted", declared_code="8517")

    process_pending()

    tea_verdict, shirt_verdict = Verdict.objects.get(item=tea), Verdict.objects.get(item=shirt)
    # The vote may stop at the chapter when five headings are all the evidence; the nearest line is the right one.
    assert tea_verdict.evidence["neighbours"][0]["code"] == "0902" and "0902".startswith(tea_verdict.recommended_code)
    assert "6109".startswith(shirt_verdict.recommended_code)
    assert shirt_verdict.tier != Verdict.Tier.AUTO_PASS
    assert shirt_verdict.evidence["neighbours"][0]["code"] == "6109"
    assert 0.7 < shirt_verdict.evidence["neighbours"][0]["score"] <= 1.0
