
from django.db import migrations, models

# Statement-level triggers (one bump per statement, however many rows): a COPY of 20,000 vectors costs one
# small upsert. Transition tables say which (space, corpus) pairs the statement touched. Versions are drawn
# from a sequence, so a number is never used twice, even after the counters' table is emptied (tests flush it);
# they are written to rows, so a new version is seen only once the change that made it is committed.
BUMP_FUNCTION = """
CREATE SEQUENCE embeddings_vector_change_seq;
CREATE FUNCTION embeddings_bump_corpus_versions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO embeddings_corpusversion (space_id, corpus, version)
    SELECT space_id, corpus, nextval('embeddings_vector_change_seq')
    FROM (SELECT DISTINCT space_id, corpus FROM changed_rows ORDER BY space_id, corpus) AS touched
    ON CONFLICT (space_id, corpus) DO UPDATE SET version = EXCLUDED.version;
    RETURN NULL;
END $$;
CREATE FUNCTION embeddings_bump_all_corpus_versions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE embeddings_corpusversion SET version = nextval('embeddings_vector_change_seq');
    RETURN NULL;
END $$;
CREATE TRIGGER vector_inserted AFTER INSERT ON embeddings_vector REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION embeddings_bump_corpus_versions();
CREATE TRIGGER vector_updated AFTER UPDATE ON embeddings_vector REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION embeddings_bump_corpus_versions();
CREATE TRIGGER vector_deleted AFTER DELETE ON embeddings_vector REFERENCING OLD TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION embeddings_bump_corpus_versions();
CREATE TRIGGER vector_truncated AFTER TRUNCATE ON embeddings_vector
    FOR EACH STATEMENT EXECUTE FUNCTION embeddings_bump_all_corpus_versions();
"""
DROP_FUNCTION = """
DROP TRIGGER IF EXISTS vector_inserted ON embeddings_vector;
DROP TRIGGER IF EXISTS vector_updated ON embeddings_vector;
DROP TRIGGER IF EXISTS vector_deleted ON embeddings_vector;
DROP TRIGGER IF EXISTS vector_truncated ON embeddings_vector;
DROP FUNCTION IF EXISTS embeddings_bump_corpus_versions();
DROP FUNCTION IF EXISTS embeddings_bump_all_corpus_versions();
DROP SEQUENCE IF EXISTS embeddings_vector_change_seq;
"""


class Migration(migrations.Migration):

    dependencies = [
        ('embeddings', '0004_language_means'),
    ]

    operations = [
        migrations.CreateModel(
            name='CorpusVersion',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('space_id', models.BigIntegerField()),
                ('corpus', models.CharField(max_length=40)),
                ('version', models.BigIntegerField(default=0)),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('space_id', 'corpus'), name='corpus_version_unique')],
            },
        ),
        migrations.RunSQL(BUMP_FUNCTION, DROP_FUNCTION),
    ]
