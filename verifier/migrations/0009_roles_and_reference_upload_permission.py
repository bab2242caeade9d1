"""Roles with exact rights (README "Roles"): reference uploads become a permission of their own, held by the
new "Knowledge curators" group; "Declarants" may submit declarations through the API and read their own batches.

Reviewers (0003, faq 0004) and FAQ editors (faq 0002, 0004) keep exactly what they had: neither may upload.
"""
from django.contrib.auth.management import create_permissions
from django.db import migrations

CURATORS_GROUP = "Knowledge curators"
DECLARANTS_GROUP = "Declarants"
CURATOR_PERMISSIONS = [
    # Upload declarations, reference batches included: what the knowledge base learns from.
    ("verifier", "add_declarationbatch"),
    ("verifier", "upload_reference_batch"),
    # See what an upload did: its batch, items, verdicts and rejected rows.
    ("verifier", "view_declarationbatch"),
    ("verifier", "view_declarationitem"),
    ("verifier", "view_verdict"),
    ("verifier", "view_importrowerror"),
    ("verifier", "view_review"),
    # The knowledge base and what steers verdicts from it: thresholds and the normalisation glossary.
    ("verifier", "view_hscode"),
    ("verifier", "view_knowledgeentry"),
    *[("verifier", f"{action}_{model}") for model in ("routingthreshold", "glossaryterm")
      for action in ("view", "add", "change", "delete")],
]
DECLARANT_PERMISSIONS = [("verifier", "add_declarationbatch")]


def create_roles(apps, schema_editor):
    # Permissions are normally created after all migrations; the groups need them now (the new one included).
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, wanted in ((CURATORS_GROUP, CURATOR_PERMISSIONS), (DECLARANTS_GROUP, DECLARANT_PERMISSIONS)):
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.set([
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
            for app_label, codename in wanted
        ])


def delete_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=[CURATORS_GROUP, DECLARANTS_GROUP]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("verifier", "0008_failure_paths_submitter_versions"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="declarationbatch",
            options={
                "permissions": [
                    ("upload_reference_batch", "Can upload reference batches (they join the knowledge base)")
                ],
                "verbose_name_plural": "declaration batches",
            },
        ),
        migrations.RunPython(create_roles, delete_roles),
    ]
