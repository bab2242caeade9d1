"""The hierarchical vote on hand-made evidence (pure: no database, no model)."""
from __future__ import annotations

import json

import pytest

from verifier.recommendation import Evidence, recommend_hs_code

_ids = iter(range(1, 10_000))


def evidence(code: str, score: float) -> Evidence:
    return Evidence(entry_id=next(_ids), code=code, source="nomenclature", language="en", score=score,
                    text=f"line {code}")


def test_it_recommends_the_subheading_when_its_evidence_dominates():
    recommendation = recommend_hs_code([evidence("851762", 0.93), evidence("851762", 0.925), evidence("847130", 0.86)])
    assert (recommendation.code, recommendation.level) == ("851762", 6)
    assert recommendation.confidence > 0.9


def test_it_recommends_nothing_when_no_evidence_code_reaches_a_chapter():
    recommendation = recommend_hs_code([evidence("8", 0.93), evidence("", 0.90)], declared_code="851762")
    assert (recommendation.code, recommendation.level, recommendation.confidence) == ("", 0, 0.0)
    assert recommendation.declared_code == "851762"


def test_it_stops_at_the_heading_when_its_subheadings_split_the_vote():
    recommendation = recommend_hs_code([
        evidence("010121", 0.90), evidence("010129", 0.90), evidence("010130", 0.899), evidence("0101", 0.895),
        evidence("020110", 0.86),
    ])
    assert (recommendation.code, recommendation.level) == ("0101", 4)
    assert recommendation.by_level[6][0].share < 0.5


def test_it_weighs_a_heading_by_its_best_evidence_not_by_how_many_lines_it_has():
    lines = [evidence("030211", 0.900), evidence("030213", 0.898), evidence("030214", 0.897),
             evidence("030219", 0.896), evidence("160420", 0.905)]
    pooled = recommend_hs_code(lines)
    summed = recommend_hs_code(lines, pooling="sum")
    assert pooled.path[:2] == ("16", "1604")
    assert summed.path[:2] == ("03", "0302")  # four near lines outvote one better line when summed


def test_it_chooses_the_heading_within_the_chosen_chapter():
    # Chapter 84 holds most of the summed vote, though heading 8517 alone is the strongest heading.
    recommendation = recommend_hs_code([
        evidence("851762", 0.900), evidence("847130", 0.8985), evidence("844331", 0.898), evidence("843890", 0.897),
    ], pooling="sum")
    assert recommendation.by_level[4][0].code == "8517"
    assert recommendation.path == ("84", "8471", "847130")


def test_it_lets_a_subheading_line_vote_for_its_heading_and_chapter():
    recommendation = recommend_hs_code([evidence("0101", 0.88), evidence("870380", 0.93)])
    assert recommendation.by_level[2][0].code == "87"
    assert recommendation.by_level[4][0].code == "8703"


def test_it_reports_the_margin_between_the_best_and_second_best_codes():
    recommendation = recommend_hs_code([evidence("0901", 0.90), evidence("0902", 0.90)], temperature=0.02)
    assert recommendation.level == 2  # two equally good headings: only the chapter is certain
    assert recommendation.by_level[4][0].share == pytest.approx(0.5)
    clear = recommend_hs_code([evidence("0901", 0.95), evidence("0902", 0.85)])
    assert clear.margin == pytest.approx(clear.alternatives[0].share - clear.alternatives[1].share)
    assert clear.margin > 0.9


def test_it_keeps_confidence_between_zero_and_one_and_lower_when_the_chapter_is_disputed():
    settled = recommend_hs_code([evidence("640399", 0.92), evidence("640399", 0.91)])
    disputed = recommend_hs_code([evidence("640399", 0.92), evidence("420292", 0.918), evidence("420221", 0.917)])
    assert 0.0 <= disputed.confidence < settled.confidence <= 1.0


def test_it_reports_how_much_of_the_vote_the_declared_code_has():
    recommendation = recommend_hs_code([evidence("851762", 0.95), evidence("851830", 0.80)], declared_code="851830")
    assert recommendation.declared_share is not None and recommendation.declared_share < 0.01
    assert recommendation.code == "851762"


def test_it_recommends_nothing_without_evidence():
    recommendation = recommend_hs_code([])
    assert (recommendation.code, recommendation.level, recommendation.confidence) == ("", 0, 0.0)


def test_it_keeps_the_evidence_best_first_and_serialises_to_json():
    recommendation = recommend_hs_code([evidence("0101", 0.80), evidence("010121", 0.90)])
    assert [item.score for item in recommendation.evidence] == [0.90, 0.80]
    stored = json.loads(json.dumps(recommendation.to_json()))
    assert stored["code"] == recommendation.code
    assert stored["evidence"][0]["code"] == "010121"
    assert stored["alternatives"][0]["share"] > 0


@pytest.mark.django_db
def test_an_approved_reference_among_the_neighbours_counts_as_the_declared_codes_own_evidence():
    from embeddings.models import EmbeddingSpace
    from verifier.models import KnowledgeEntry
    from verifier.recommendation import Evidence, declared_evidence

    space = EmbeddingSpace.objects.create(model_name="intfloat/multilingual-e5-small", dimensions=4,
                                          prompt_version="e5-query-passage-v1")
    reference = KnowledgeEntry.objects.create(source=KnowledgeEntry.Source.REFERENCE, hs_code="85171300",
                                              chapter="85", text="smartphone 5g", display_text="Smartphone 5G")
    neighbours = [[Evidence(reference.pk, "85171300", "reference", "en", 0.97, "Smartphone 5G"),
                   Evidence(0, "85", "prototype", "", 0.99, "")]]

    found = declared_evidence(space=space, vectors=[[1.0, 0.0, 0.0, 0.0]], declared_codes=["851713"],
                              neighbours=neighbours)

    # No nomenclature line is loaded: the reference is the closest line at every level, prototypes never are.
    assert [(item.source, item.entry_id, item.score) for item in found[0]] == [
        ("declared_2", reference.pk, 0.97), ("declared_4", reference.pk, 0.97), ("declared_6", reference.pk, 0.97)]
