"""Knowledge-base vectors split by script: each part has its own HNSW index, and the evidence search walks both."""
from __future__ import annotations

import pytest

from embeddings.models import Vector
from verifier.knowledge import delete_knowledge_vectors, index_knowledge_texts
from verifier.models import KNOWLEDGE_CORPUS, KNOWLEDGE_CORPUS_CJK, KnowledgeEntry, knowledge_corpus
from verifier.recommendation import find_evidence

from .factories import make_hs_code


@pytest.mark.parametrize("text, corpus", [
    ("无线蓝牙耳机", KNOWLEDGE_CORPUS_CJK),
    ("bluetooth 耳机 model x1", KNOWLEDGE_CORPUS_CJK),
    ("bluetooth earphones without cable", KNOWLEDGE_CORPUS),
    ("ｂｌｕｅｔｏｏｔｈ", KNOWLEDGE_CORPUS),  # full-width Latin is not CJK text
    ("", KNOWLEDGE_CORPUS),
])
def test_a_text_with_any_cjk_ideograph_belongs_to_the_cjk_corpus(text, corpus):
    assert knowledge_corpus(text) == corpus


def corpora_of(entry_id: int) -> list[str]:
    return sorted(Vector.objects.filter(object_id=entry_id, corpus__startswith="hs_knowledge")
                  .values_list("corpus", flat=True))


@pytest.mark.django_db
def test_an_entry_whose_text_changes_script_moves_to_the_other_corpus(embedding_double):
    entry = make_hs_code("851762", "bluetooth earphones").entries.get()
    index_knowledge_texts(entry_ids=[entry.pk], texts=[entry.text])
    assert corpora_of(entry.pk) == [KNOWLEDGE_CORPUS]

    KnowledgeEntry.objects.filter(pk=entry.pk).update(text="无线蓝牙耳机")
    index_knowledge_texts(entry_ids=[entry.pk], texts=["无线蓝牙耳机"])
    assert corpora_of(entry.pk) == [KNOWLEDGE_CORPUS_CJK]

    delete_knowledge_vectors(entry_ids=[entry.pk])
    assert corpora_of(entry.pk) == []


@pytest.mark.django_db
def test_the_evidence_search_finds_lines_of_both_scripts_best_first(embedding_double):
    english = make_hs_code("851762", "bluetooth earphones").entries.get()
    chinese = make_hs_code("610910", "棉制针织T恤衫", language="zh").entries.get()
    other = make_hs_code("090210", "green tea in packings").entries.get()
    index_knowledge_texts(entry_ids=[english.pk, chinese.pk, other.pk],
                          texts=[english.text, chinese.text, other.text])

    for description, expected in ((chinese.text, chinese), (english.text, english)):
        lines = [item for item in find_evidence([description])[0] if item.source != "prototype"]
        assert lines[0].entry_id == expected.pk and lines[0].score > 0.99
        # Every line of both indexes is a candidate (k exceeds the knowledge base), best first.
        assert {item.entry_id for item in lines} == {english.pk, chinese.pk, other.pk}
        assert [item.score for item in lines] == sorted((item.score for item in lines), reverse=True)


@pytest.mark.django_db(transaction=True)
def test_the_migration_moves_existing_cjk_vectors_into_their_own_indexed_corpus(embedding_double):
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    from embeddings.store import active_space, ensure_index, index_name, store_vectors

    before, after = [("verifier", "0006_hs_prototype_model")], [("verifier", "0007_knowledge_vectors_by_script")]
    MigrationExecutor(connection).migrate(before)
    try:
        # The layout before the split: every knowledge vector in one corpus and one index.
        english = make_hs_code("851762", "bluetooth earphones").entries.get()
        chinese = make_hs_code("610910", "棉制针织t恤衫", language="zh").entries.get()
        space = active_space()
        store_vectors(space=space, corpus=KNOWLEDGE_CORPUS, object_ids=[english.pk, chinese.pk],
                      texts=[english.text, chinese.text],
                      vectors=embedding_double.vectors_for([english.text, chinese.text]))
        ensure_index(space, KNOWLEDGE_CORPUS)

        MigrationExecutor(connection).migrate(after)

        assert corpora_of(english.pk) == [KNOWLEDGE_CORPUS] and corpora_of(chinese.pk) == [KNOWLEDGE_CORPUS_CJK]
        with connection.cursor() as cursor:
            cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [f'"{index_name(space.id, KNOWLEDGE_CORPUS_CJK)}"'])
            assert cursor.fetchone()[0]
        assert find_evidence([chinese.text])[0][0].entry_id == chinese.pk
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db
def test_each_part_of_the_search_uses_its_own_hnsw_index(embedding_double):
    import numpy as np
    from django.db import connection

    from embeddings.binary_parameters import binary_parameter_cursor
    from embeddings.selectors import nearest_neighbours_statement
    from embeddings.store import active_space, index_name
    from verifier.models import KNOWLEDGE_CORPORA

    english = make_hs_code("851762", "bluetooth earphones").entries.get()
    chinese = make_hs_code("610910", "棉制针织t恤衫", language="zh").entries.get()
    index_knowledge_texts(entry_ids=[english.pk, chinese.pk], texts=[english.text, chinese.text])
    space = active_space()
    sql, parameters = nearest_neighbours_statement(space=space, corpus=KNOWLEDGE_CORPORA,
                                                   vectors=np.ones((1, 384), dtype=np.float32), k=5)

    with connection.cursor() as cursor:
        # A two-row table would rather be scanned; an index must be possible.
        cursor.execute("SET LOCAL enable_seqscan = off")
    with binary_parameter_cursor() as cursor:
        cursor.execute("EXPLAIN " + sql, parameters)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    for corpus in KNOWLEDGE_CORPORA:
        assert f"Index Scan using {index_name(space.id, corpus)} " in plan
