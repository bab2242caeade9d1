"""Loading nomenclature CSVs of both shapes into codes and indexed evidence (real database, real CPU model)."""
from __future__ import annotations

import pytest
from django.db import connection

from verifier.models import KNOWLEDGE_CORPORA, KNOWLEDGE_CORPUS, KNOWLEDGE_CORPUS_CJK, HsCode, KnowledgeEntry
from verifier.nomenclature import NomenclatureFormatError, load_nomenclature, note_passages

pytestmark = pytest.mark.django_db

HS2022 = """section,hscode,description,parent,level
I,01,Animals; live,TOTAL,2
I,0101,"Horses, asses, mules and hinnies; live",01,4
I,010121,"Horses; live, pure-bred breeding animals",0101,6
I,010190,Other,0101,6
I,01X1,Broken code,01,4
I,0102,Bovine animals; live,01,6
"""

CN_HEADING = """code,name,description
0101,马、驴、骡,"01.01 马、驴、骡：
 — 马：
 21 — — 改良种用
 本品目包括马（母马、未阉雄马、已阉雄马、马驹、矮种马）、驴、马骡及驴骡。
 本品目不包括：
 （一）动物园的斑马（品目01.06）。"
"""
CN_SUBHEADING = """code,name,description
010121,改良种用马,
010129,其他马，改良种用除外,
"""
CN_SECTION = """code,name,description
1类,活动物；动物产品,
"""


def stored_vector_count(corpora=KNOWLEDGE_CORPORA) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM embeddings_vector WHERE corpus = ANY(%s)", [list(corpora)])
        return cursor.fetchone()[0]


def test_it_loads_the_hs2022_shape_and_reports_bad_rows_by_number(tmp_path):
    path = tmp_path / "hs.csv"
    path.write_text(HS2022, encoding="utf-8")

    report = load_nomenclature(path)

    assert sorted(HsCode.objects.values_list("code", flat=True)) == ["01", "0101", "010121", "010190"]
    assert [(row.row_number, "01X1" in row.reason) for row in report.bad_rows] == [(5, True), (6, False)]
    assert "level says 6" in report.bad_rows[1].reason
    assert HsCode.objects.get(code="010121").parent_code == "0101"
    assert HsCode.objects.get(code="01").parent_code == ""
    assert report.entries_indexed == 4 == stored_vector_count([KNOWLEDGE_CORPUS])


def test_it_gives_other_lines_their_parents_words(tmp_path):
    path = tmp_path / "hs.csv"
    path.write_text(HS2022, encoding="utf-8")
    load_nomenclature(path)

    entry = KnowledgeEntry.objects.get(hs_code="010190")
    assert entry.text == "horses, asses, mules and hinnies; live: other"
    assert entry.display_text == "Other"


def test_it_loads_a_directory_of_the_chinese_shape_with_heading_notes_as_extra_evidence(tmp_path):
    (tmp_path / "heading.csv").write_text(CN_HEADING, encoding="utf-8")
    (tmp_path / "subheading.csv").write_text(CN_SUBHEADING, encoding="utf-8")
    (tmp_path / "section.csv").write_text(CN_SECTION, encoding="utf-8")

    report = load_nomenclature(tmp_path, note_passages=3)

    assert [name for name, _ in report.skipped_files] == ["section.csv"]
    assert set(HsCode.objects.values_list("language", flat=True)) == {"zh"}
    notes = list(KnowledgeEntry.objects.filter(hs_code="0101", hs_code_line__isnull=True)
                 .values_list("text", flat=True))
    assert len(notes) == 1 and notes[0].startswith("本品目包括马")  # the exclusion (斑马, 01.06) is not evidence
    assert KnowledgeEntry.objects.get(hs_code="010129").text.startswith("马、驴、骡: 其他马")
    # Chinese evidence has an index of its own (verifier.models.knowledge_corpus).
    assert stored_vector_count([KNOWLEDGE_CORPUS_CJK]) == KnowledgeEntry.objects.count() == 4


def test_it_changes_nothing_when_the_same_files_are_loaded_again(tmp_path):
    (tmp_path / "heading.csv").write_text(CN_HEADING, encoding="utf-8")
    (tmp_path / "subheading.csv").write_text(CN_SUBHEADING, encoding="utf-8")
    load_nomenclature(tmp_path, note_passages=3)
    before = list(KnowledgeEntry.objects.order_by("id").values_list("id", "text"))

    again = load_nomenclature(tmp_path, note_passages=3)

    assert (again.codes_created, again.codes_updated, again.codes_unchanged) == (0, 0, 3)
    assert (again.entries_created, again.entries_updated, again.entries_removed, again.entries_indexed) == (0, 0, 0, 0)
    assert list(KnowledgeEntry.objects.order_by("id").values_list("id", "text")) == before


def test_it_updates_a_changed_line_and_embeds_only_that_line(tmp_path):
    path = tmp_path / "subheading.csv"
    path.write_text(CN_SUBHEADING, encoding="utf-8")
    load_nomenclature(path)
    path.write_text(CN_SUBHEADING.replace("改良种用马,", "改良种用的马,"), encoding="utf-8")

    report = load_nomenclature(path)

    assert (report.codes_updated, report.entries_updated, report.entries_indexed) == (1, 1, 1)


def test_it_refuses_a_file_of_an_unknown_shape_with_its_columns(tmp_path):
    path = tmp_path / "prices.csv"
    path.write_text("sku,price\n1,2\n", encoding="utf-8")
    with pytest.raises(NomenclatureFormatError, match="found sku,price"):
        load_nomenclature(path)


def test_it_keeps_descriptive_passages_of_a_note_and_drops_lists_and_exclusions():
    passages = list(note_passages(CN_HEADING.split('"')[1]))
    assert passages == ["本品目包括马（母马、未阉雄马、已阉雄马、马驹、矮种马）、驴、马骡及驴骡。"]


def test_it_drops_a_lead_in_that_names_nothing_but_keeps_one_that_names_goods():
    note = "29.15 饱和无环一元羧酸\n本品目主要包括：\n本品目包括下列酯：\n（一）甲酸及其盐和酯，例如甲酸钠。"

    assert list(note_passages(note)) == ["本品目包括下列酯：", "（一）甲酸及其盐和酯，例如甲酸钠。"]
