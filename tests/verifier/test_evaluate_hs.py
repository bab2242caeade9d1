"""evaluate_hs end to end on a tiny labelled file and a tiny nomenclature, through the real CPU model."""
from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from verifier.models import DeclarationItem, HsCode, KnowledgeEntry, Verdict

pytestmark = pytest.mark.django_db

NOMENCLATURE = """hscode,description,parent,level
01,Animals; live,TOTAL,2
0101,"Horses, asses, mules and hinnies; live",01,4
010121,"Horses; live, pure-bred breeding animals",0101,6
09,"Coffee, tea, mate and spices",TOTAL,2
0901,"Coffee, whether or not roasted or decaffeinated",09,4
090111,"Coffee; not roasted, not decaffeinated",0901,6
87,"Vehicles; other than railway or tramway rolling stock",TOTAL,2
8703,"Motor cars and other motor vehicles principally designed for the transport of persons",87,4
870380,"Vehicles; with only electric motor for propulsion",8703,6
"""
LABELLED = """id,description,hs_code,language
1,Live pure-bred breeding horses,010121,en
2,"Green coffee beans, unroasted",0901,en
3,Electric passenger car,8703,en
4,###,0101,en
"""
KEYS = {"n", "top1_2", "top1_4", "top1_6", "top1_6_best", "top1_6_nearest", "top3", "tier_auto", "tier_review",
        "tier_warning", "auto_precision"}


def live_data_snapshot() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM embeddings_vector")
        vectors = cursor.fetchone()[0]
    return {
        "codes": list(HsCode.objects.order_by("id").values_list("id", "code", "description")),
        "entries": list(KnowledgeEntry.objects.order_by("id").values_list("id", "source", "text")),
        "items": DeclarationItem.objects.count(),
        "verdicts": Verdict.objects.count(),
        "vectors": vectors,
    }


def run_evaluate_hs(*args: str) -> tuple[str, dict]:
    out = io.StringIO()
    call_command("evaluate_hs", *args, "--json", stdout=out, stderr=io.StringIO())
    text = out.getvalue()
    return text, json.loads(text.strip().splitlines()[-1])


def test_it_scores_a_labelled_file_and_changes_no_live_data(tmp_path):
    nomenclature, labelled = tmp_path / "hs.csv", tmp_path / "labelled.csv"
    nomenclature.write_text(NOMENCLATURE, encoding="utf-8")
    labelled.write_text(LABELLED, encoding="utf-8")
    _, first = run_evaluate_hs(str(labelled), "--nomenclature", str(nomenclature))  # loads the knowledge base
    before = live_data_snapshot()

    text, figures = run_evaluate_hs(str(labelled), "--nomenclature", str(nomenclature))

    assert set(figures) == KEYS
    assert figures == first
    assert figures["n"] == 4
    # Three clearly different products against three chapters: the real model gets the chapters right.
    assert figures["top1_2"] >= 2 / 3
    assert figures["top1_6"] is not None  # one label has 6 digits
    assert figures["tier_warning"] == pytest.approx(0.25)  # "###" cannot be judged
    assert figures["tier_auto"] + figures["tier_review"] + figures["tier_warning"] == pytest.approx(1.0)
    assert "top1_4" in text
    assert live_data_snapshot() == before
    assert not KnowledgeEntry.objects.filter(source=KnowledgeEntry.Source.REFERENCE).exists()


def test_with_recall_it_compares_the_production_search_with_an_exact_scan(tmp_path):
    nomenclature, labelled = tmp_path / "hs.csv", tmp_path / "labelled.csv"
    nomenclature.write_text(NOMENCLATURE, encoding="utf-8")
    labelled.write_text(LABELLED, encoding="utf-8")

    _, figures = run_evaluate_hs(str(labelled), "--nomenclature", str(nomenclature), "--recall")

    assert set(figures) == KEYS | {"knn_recall", "knn_lost"}
    # Nine lines: the HNSW search holds every one, so it returns exactly the true nearest.
    assert figures["knn_recall"] == 1.0
    assert figures["knn_lost"] == 0


def test_it_refuses_to_evaluate_against_an_empty_knowledge_base(tmp_path):
    labelled = tmp_path / "labelled.csv"
    labelled.write_text(LABELLED, encoding="utf-8")
    with pytest.raises(CommandError, match="knowledge base is empty"):
        call_command("evaluate_hs", str(labelled), stdout=io.StringIO())


def test_it_reports_a_file_without_the_label_column(tmp_path):
    nomenclature, labelled = tmp_path / "hs.csv", tmp_path / "labelled.csv"
    nomenclature.write_text(NOMENCLATURE, encoding="utf-8")
    labelled.write_text("id,description\n1,coffee\n", encoding="utf-8")
    with pytest.raises(CommandError, match="missing column.*hs_code"):
        call_command("evaluate_hs", str(labelled), "--nomenclature", str(nomenclature), stdout=io.StringIO())


CHECK_FILE = """id,description,hs_code,declared_code,language
1,Live pure-bred breeding horses,010121,010121,en
2,"Green coffee beans, unroasted",0901,0901,en
3,Electric passenger car,8703,090111,en
"""


def test_rows_with_a_declared_code_are_judged_in_check_mode_and_nothing_is_kept(tmp_path):
    nomenclature, check = tmp_path / "hs.csv", tmp_path / "check.csv"
    nomenclature.write_text(NOMENCLATURE, encoding="utf-8")
    check.write_text(CHECK_FILE, encoding="utf-8")
    run_evaluate_hs(str(check), "--nomenclature", str(nomenclature))
    before = live_data_snapshot()

    _, figures = run_evaluate_hs(str(check))

    assert figures["check_n"] == 3 and figures["correct_n"] == 2 and figures["wrong_n"] == 1
    # A car declared as coffee: chapter 09's closest line is far below the car line, a warning.
    assert figures["far_wrong_warning"] == 1.0 and figures["wrong_auto_pass"] == 0.0
    assert figures["correct_warning"] == 0.0
    assert live_data_snapshot() == before


def test_it_refuses_to_score_against_a_knowledge_base_whose_load_stopped_half_way(tmp_path):
    from embeddings.store import delete_vectors
    from verifier.models import KNOWLEDGE_CORPORA

    nomenclature, labelled = tmp_path / "hs.csv", tmp_path / "labelled.csv"
    nomenclature.write_text(NOMENCLATURE, encoding="utf-8")
    labelled.write_text(LABELLED, encoding="utf-8")
    run_evaluate_hs(str(labelled), "--nomenclature", str(nomenclature))
    coffee = KnowledgeEntry.objects.get(hs_code="0901")
    for corpus in KNOWLEDGE_CORPORA:  # as if the embedding call for this line had timed out
        delete_vectors(corpus=corpus, object_ids=[coffee.pk])

    with pytest.raises(CommandError, match=r"incomplete: 1 knowledge entries have no vector .*codes 0901"):
        call_command("evaluate_hs", str(labelled), stdout=io.StringIO())

    text, figures = run_evaluate_hs(str(labelled), "--nomenclature", str(nomenclature))  # the load resumes
    assert "1 embedded" in text and figures["n"] == 4


def test_prequential_judges_block_by_block_and_removes_the_references_it_approved(tmp_path):
    nomenclature, labelled = tmp_path / "hs.csv", tmp_path / "labelled.csv"
    nomenclature.write_text(NOMENCLATURE, encoding="utf-8")
    labelled.write_text(LABELLED, encoding="utf-8")
    run_evaluate_hs(str(labelled), "--nomenclature", str(nomenclature))
    before = live_data_snapshot()

    _, figures = run_evaluate_hs(str(labelled), "--prequential", "2")

    blocks = figures["prequential"]
    assert [block["n"] for block in blocks] == [2, 2]
    # The second block was judged with the first block's approved codes in the knowledge base
    # ("###" is judged too, and approved: a reviewer can set a code for any item).
    assert [block["references_before"] for block in blocks] == [0, 2]
    assert set(blocks[0]) >= {"top1_2", "top1_4", "top1_6", "auto_pass_share", "auto_pass_precision"}
    assert live_data_snapshot() == before
