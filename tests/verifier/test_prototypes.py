"""Chapter and heading prototypes: centroids of the knowledge base's vectors, stored per space and mixed into
the vote."""
from __future__ import annotations

import numpy as np
import pytest

from embeddings.store import active_space
from verifier.models import HsPrototypeModel, KnowledgeEntry
from verifier.nomenclature import load_nomenclature
from verifier.prototypes import _cache, centroids, fit_prototypes, prototype_similarities
from verifier.recommendation import PROTOTYPE_SOURCE, Evidence, find_evidence, recommend_hs_code

HS2022 = """section,hscode,description,parent,level
I,01,Animals; live,TOTAL,2
I,0101,"Horses, asses, mules and hinnies; live",01,4
I,010121,"Horses; live, pure-bred breeding animals",0101,6
XVI,85,Electrical machinery and equipment,TOTAL,2
XVI,8517,Telephone sets,85,4
XVI,851713,Smartphones,8517,6
"""


def line(code: str, score: float) -> Evidence:
    return Evidence(entry_id=1, code=code, source="nomenclature", language="en", score=score, text=code)


def prototype(code: str, score: float) -> Evidence:
    return Evidence(entry_id=0, code=code, source=PROTOTYPE_SOURCE, language="", score=score, text="")


def test_it_makes_one_unit_centroid_per_chapter_and_heading():
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 2.0]], dtype=np.float32)
    prototypes = centroids(["0101", "010121", "8517"], vectors)

    assert prototypes[2][0] == ["01", "85"]
    assert prototypes[4][0] == ["0101", "8517"]
    np.testing.assert_allclose(prototypes[2][1][0], [np.sqrt(0.5), np.sqrt(0.5)], rtol=1e-6)
    np.testing.assert_allclose(prototypes[4][1][1], [0.0, 1.0])


def test_it_lets_the_prototypes_settle_a_chapter_the_lines_barely_split():
    lines = [line("851713", 0.900), line("010121", 0.901)]
    without = recommend_hs_code(lines)
    mixed = recommend_hs_code(lines + [prototype("85", 0.88), prototype("01", 0.80),
                                       prototype("8517", 0.87), prototype("0101", 0.79)])

    assert without.path[0] == "01"
    assert mixed.path[0] == "85"
    assert mixed.path == ("85", "8517", "851713")


def test_it_keeps_prototypes_out_of_the_evidence_shown_and_the_best_similarity():
    recommendation = recommend_hs_code([line("851713", 0.90), prototype("85", 0.95)])

    assert recommendation.best_similarity == 0.90
    assert all(item.source != PROTOTYPE_SOURCE for item in recommendation.evidence)


def test_it_ignores_prototypes_without_line_evidence():
    assert recommend_hs_code([prototype("85", 0.95)]).code == ""


@pytest.mark.django_db
def test_it_stores_prototypes_per_space_and_refits_when_the_knowledge_base_changes(tmp_path, embedding_double):
    path = tmp_path / "hs.csv"
    path.write_text(HS2022, encoding="utf-8")
    load_nomenclature(path)
    space = active_space()
    vector = np.ones((1, space.dimensions), dtype=np.float32)

    first = prototype_similarities(space=space, vectors=vector)[0]
    model = HsPrototypeModel.objects.get(space=space)
    assert {code for code, _ in first[2]} == {"01", "85"}
    assert model.entries == KnowledgeEntry.objects.count()

    KnowledgeEntry.objects.filter(hs_code="851713").delete()
    _cache.clear()  # as if the minute between checks had passed
    prototype_similarities(space=space, vectors=vector)
    assert HsPrototypeModel.objects.get(space=space).entries == model.entries - 1


@pytest.mark.django_db
def test_it_ends_each_evidence_list_with_the_best_prototypes(tmp_path, embedding_double):
    path = tmp_path / "hs.csv"
    path.write_text(HS2022, encoding="utf-8")
    load_nomenclature(path)
    fit_prototypes(space=active_space())

    [evidence] = find_evidence(["smartphone"])

    prototypes = [item for item in evidence if item.source == PROTOTYPE_SOURCE]
    assert {len(item.code) for item in prototypes} == {2, 4}
    assert evidence[0].source == "nomenclature"


@pytest.mark.django_db
def test_it_fits_the_active_space_from_the_command(tmp_path, embedding_double):
    from io import StringIO

    from django.core.management import call_command

    path = tmp_path / "hs.csv"
    path.write_text(HS2022, encoding="utf-8")
    load_nomenclature(path)
    output = StringIO()

    call_command("fit_hs_prototypes", stdout=output)

    assert f"on {KnowledgeEntry.objects.count()} evidence vectors" in output.getvalue()
    assert HsPrototypeModel.objects.filter(space=active_space()).exists()
