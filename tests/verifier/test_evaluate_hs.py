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
KEYS = {"n", "top1_2", "top1_4", "top1_6", "top3", "tier_auto", "tier_review", "tier_warning", "auto_precision"}


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
