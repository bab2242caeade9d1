"""Failure paths (issue 13): identity per submitter with versions, claims by task, import attempts, verdict writes.

Existing items get their batch creator as submitter and the hash of their content, so a re-submission
after the upgrade is recognised as identical or as a new version like any other.
"""
import hashlib

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


# A frozen copy of verifier.importing.CONTENT_FIELDS and content_hash as they were when this ran.
CONTENT_FIELDS = (
    "description_raw", "product_name", "spec", "declared_code", "origin", "quantity", "unit", "value", "currency",
)


def fill_submitters_and_content_hashes(apps, schema_editor):
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        # The submitter is a deferred foreign key: checked now, or its pending checks would make the
        # constraint added after this step fail ("pending trigger events") on a table with rows.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(
            "UPDATE verifier_declarationitem AS item SET submitter_id = batch.created_by_id "
            "FROM verifier_declarationbatch AS batch WHERE item.batch_id = batch.id AND batch.created_by_id IS NOT NULL"
        )
    DeclarationItem = apps.get_model("verifier", "DeclarationItem")
    after_id = 0
    while True:
        rows = list(DeclarationItem.objects.using(connection.alias).filter(id__gt=after_id).order_by("id")
                    .values_list("id", *CONTENT_FIELDS)[:5000])
        if not rows:
            return
        ids, hashes = [], []
        for row in rows:
            parts = [str(value if value is not None else "") for value in row[1:]]
            ids.append(row[0])
            hashes.append(hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest())
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE verifier_declarationitem AS item SET content_hash = given.digest "
                "FROM unnest(%s::bigint[], %s::text[]) AS given(id, digest) WHERE item.id = given.id",
                [ids, hashes],
            )
        after_id = ids[-1]


class Migration(migrations.Migration):

    dependencies = [
        ('verifier', '0007_knowledge_vectors_by_script'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='declarationitem',
            name='declaration_item_identity_unique',
        ),
        migrations.AddField(
            model_name='declarationbatch',
            name='import_attempted_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='declarationbatch',
            name='import_attempts',
            field=models.PositiveSmallIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name='declarationitem',
            name='claimed_by',
            field=models.CharField(blank=True, db_default='', default='', max_length=64),
        ),
        migrations.AddField(
            model_name='declarationitem',
            name='content_hash',
            field=models.CharField(blank=True, db_default='', default='', max_length=64),
        ),
        migrations.AddField(
            model_name='declarationitem',
            name='submitter',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='submitted_declaration_items', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddField(
            model_name='declarationitem',
            name='version',
            field=models.PositiveIntegerField(db_default=1, default=1),
        ),
        migrations.AddField(
            model_name='verdict',
            name='writes',
            field=models.PositiveIntegerField(db_default=1, default=1),
        ),
        migrations.RunPython(fill_submitters_and_content_hashes, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name='declarationitem',
            constraint=models.UniqueConstraint(fields=('submitter', 'identity_key', 'version'), name='declaration_item_submitter_identity_version_unique', nulls_distinct=False),
        ),
    ]
