from django.db import migrations, models

# Not the prototypes: they are refitted from the knowledge vectors, whose own counter already moved.
WATCHED_TABLES = ("verifier_knowledgeentry", "verifier_hscode")
# One bump per statement (not per row): a bulk load of 17,000 lines costs one upsert of one row. As for the
# vectors' counters (embeddings 0005): numbers from a sequence, never reused, seen once committed.
BUMP = """
CREATE SEQUENCE verifier_knowledge_change_seq;
CREATE FUNCTION verifier_bump_knowledge_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO verifier_knowledgeversion (id, version) VALUES (1, nextval('verifier_knowledge_change_seq'))
    ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version;
    RETURN NULL;
END $$;
""" + "".join(
    f"CREATE TRIGGER {table}_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
    "FOR EACH STATEMENT EXECUTE FUNCTION verifier_bump_knowledge_version();\n"
    for table in WATCHED_TABLES
)
UNBUMP = "".join(f"DROP TRIGGER IF EXISTS {table}_changed ON {table};\n" for table in WATCHED_TABLES) + (
    "DROP FUNCTION IF EXISTS verifier_bump_knowledge_version();\nDROP SEQUENCE IF EXISTS verifier_knowledge_change_seq;\n"
)


class Migration(migrations.Migration):

    dependencies = [
        ('embeddings', '0005_corpus_versions'),
        ('verifier', '0011_check_mode_thresholds'),
    ]

    operations = [
        migrations.CreateModel(
            name='KnowledgeVersion',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('version', models.BigIntegerField(default=0)),
            ],
        ),
        migrations.AddField(
            model_name='verdict',
            name='judgement_key',
            field=models.BinaryField(blank=True, max_length=32, null=True),
        ),
        migrations.AddIndex(
            model_name='verdict',
            index=models.Index(condition=models.Q(('judgement_key__isnull', False)), fields=['judgement_key'], name='verdict_judgement_key_idx'),
        ),
        migrations.RunSQL(BUMP, UNBUMP),
    ]
