from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from embeddings.models import Vector
from embeddings.store import active_space
from verifier.models import (
    KNOWLEDGE_CORPUS,
    KNOWLEDGE_CORPUS_CJK,
    DeclarationItem,
    KnowledgeEntry,
    Review,
    RoutingThreshold,
    Verdict,
)

from .factories import make_item, make_verdict

pytestmark = pytest.mark.django_db


def test_import_declarations_imports_items_and_reports_bad_rows(tmp_path, capsys):
    path = tmp_path / "items.csv"
    path.write_text("id,description,hs_code\nA1,green tea,090210\nA2,black tea,09O2\n", encoding="gb18030")

    call_command("import_declarations", str(path), "--mode", "suggest")

    output = capsys.readouterr().out
    assert "2 rows read, 1 items created" in output and "row 2: hs_code '09O2'" in output
    assert DeclarationItem.objects.get().batch.mode == "suggest"


def test_import_declarations_with_reference_grows_the_knowledge_base_once(tmp_path, embedding_double):
    path = tmp_path / "approved.jsonl"
    path.write_text('{"id": "H1", "description": "无线蓝牙耳机", "hs_code": "85176200"}\n'
                    '{"id": "H2", "description": "cotton t-shirt"}\n', encoding="utf-8")

    call_command("import_declarations", str(path), "--reference")
    call_command("import_declarations", str(path), "--reference")

    entry = KnowledgeEntry.objects.get(source=KnowledgeEntry.Source.REFERENCE)
    assert (entry.hs_code, entry.chapter, entry.display_text) == ("85176200", "85", "无线蓝牙耳机")
    # Chinese text: its vector is in the CJK part of the knowledge base (verifier.models.knowledge_corpus).
    assert Vector.objects.filter(corpus=KNOWLEDGE_CORPUS_CJK, object_id=entry.pk).count() == 1
    assert not Vector.objects.filter(corpus=KNOWLEDGE_CORPUS, object_id=entry.pk).exists()
    assert not DeclarationItem.objects.exists()


def test_import_declarations_fails_loudly_on_an_unreadable_file(tmp_path):
    path = tmp_path / "items.csv"
    path.write_text("name\ntea\n")

    with pytest.raises(CommandError, match="no 'description' column"):
        call_command("import_declarations", str(path))


def test_calibrate_thresholds_stores_thresholds_from_reviewed_items(embedding_double, staff_user, capsys):
    space = active_space()
    # 150 right at confidence 0.95, 50 wrong at 0.5: only the 95% lower bound of 150/150 (0.982) reaches 0.98.
    for number in range(200):
        item = make_item(declared_code="851762")
        make_verdict(item=item, space=space, recommended_code="851762" if number < 150 else "610910",
                     confidence=0.95 if number < 150 else 0.5, margin=0.5, best_similarity=0.95)
        Review.objects.create(item=item, reviewer=staff_user, action=Review.Action.CONFIRM_DECLARED,
                              from_code="851762", to_code="851762", tier_at_review=Verdict.Tier.MANUAL_REVIEW)

    call_command("calibrate_thresholds", "--target-precision", "0.98")

    threshold = RoutingThreshold.objects.get(space=space, chapter="")
    assert 0.5 < threshold.auto_pass_min_confidence <= 0.95
    assert "150/200 selected at precision 1.000" in capsys.readouterr().out


def test_calibrate_thresholds_from_a_labelled_file_stores_nothing_but_thresholds(knowledge_base, tmp_path, capsys):
    rows = ["id,description,hs_code,language"]
    for number in range(40):
        code = list(knowledge_base)[number % 4]
        # Every tenth label is wrong on purpose: 90% precision cannot reach the 98% target.
        label = "999999" if number % 10 == 0 else code
        rows.append(f'L{number},"{knowledge_base[code]}",{label},en')
    path = tmp_path / "labelled.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    entries_before = KnowledgeEntry.objects.count()

    call_command("calibrate_thresholds", "--labelled", str(path), "--target-precision", "0.98")

    threshold = RoutingThreshold.objects.get(chapter="")
    assert threshold.auto_pass_min_confidence > 1  # auto-pass closed: no threshold keeps 98%
    assert "suggest auto-pass: no setting reaches precision 0.98" in capsys.readouterr().out
    # The rows were judged through the real pipeline, and nothing of them was kept.
    assert KnowledgeEntry.objects.count() == entries_before and not DeclarationItem.objects.exists()


def test_verify_pending_verifies_in_process(knowledge_base, capsys):
    item = make_item(description_raw=knowledge_base["090210"], declared_code="090210")

    call_command("verify_pending")

    assert "1 items verified" in capsys.readouterr().out
    assert Verdict.objects.get(item=item).tier == Verdict.Tier.AUTO_PASS
