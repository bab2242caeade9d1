"""Knowledge vectors of CJK text move to their own corpus (and HNSW index); see verifier.models.knowledge_corpus.

The vectors are moved, not re-embedded. The old index is rebuilt once the move has committed: its
graph still held the moved entries, and searches kept walking into them (measured: 27 of the 688
English hsbench descriptions got no true neighbour until a vacuum cleaned the graph). Not atomic, so
that the rebuild sees the move committed; both steps can be run again.
"""
from django.db import migrations

# Frozen here: the migration must do what it did when it was written.
OLD_CORPUS = "hs_knowledge"
CJK_CORPUS = "hs_knowledge_cjk"
CJK_CHARACTER_CLASS = "[\u3400-\u9fff\uf900-\ufaff]"


def _rebuild_indexes(apps, connection, space_ids) -> None:
    from embeddings.store import ensure_index, index_name

    for space in apps.get_model("embeddings", "EmbeddingSpace").objects.filter(id__in=space_ids):
        with connection.cursor() as cursor:
            cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [f'"{index_name(space.id, OLD_CORPUS)}"'])
            if cursor.fetchone()[0]:
                cursor.execute(f'REINDEX INDEX "{index_name(space.id, OLD_CORPUS)}"')
        ensure_index(space, CJK_CORPUS)


def split_by_script(apps, schema_editor) -> None:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "UPDATE embeddings_vector vector SET corpus = %s FROM verifier_knowledgeentry entry "
            "WHERE vector.corpus = %s AND entry.id = vector.object_id AND entry.text ~ %s "
            "RETURNING vector.space_id",
            [CJK_CORPUS, OLD_CORPUS, CJK_CHARACTER_CLASS],
        )
        space_ids = {space_id for (space_id,) in cursor.fetchall()}
    _rebuild_indexes(apps, schema_editor.connection, space_ids)


def merge_back(apps, schema_editor) -> None:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("UPDATE embeddings_vector SET corpus = %s WHERE corpus = %s", [OLD_CORPUS, CJK_CORPUS])
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'embeddings_vector' AND indexname LIKE %s",
            [f"%_{CJK_CORPUS}_hnsw"],
        )
        for (name,) in cursor.fetchall():
            cursor.execute(f'DROP INDEX IF EXISTS "{name}"')


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("embeddings", "0003_space_endpoint_and_build_progress"),
        ("verifier", "0006_hs_prototype_model"),
    ]

    operations = [migrations.RunPython(split_by_script, merge_back)]
