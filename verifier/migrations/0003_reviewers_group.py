"""The Reviewers group: exactly what a customs reviewer needs to work the queue.

They see batches, items, verdicts, the nomenclature and the knowledge base, and record
reviews. They cannot edit items, verdicts, thresholds, the glossary or the FAQ library.
"""
from django.contrib.auth.management import create_permissions
from django.db import migrations

REVIEWERS_GROUP = "Reviewers"
REVIEWER_PERMISSIONS = [
    ("verifier", "view_declarationbatch"),
    ("verifier", "view_declarationitem"),
    ("verifier", "view_verdict"),
    ("verifier", "view_importrowerror"),
    ("verifier", "view_hscode"),
    ("verifier", "view_knowledgeentry"),
    ("verifier", "view_review"),
    ("verifier", "add_review"),
]


def create_reviewers_group(apps, schema_editor):
    # Permissions are normally created after all migrations; the group needs them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name=REVIEWERS_GROUP)
    permissions = [
        Permission.objects.get(content_type__app_label=app_label, codename=codename)
        for app_label, codename in REVIEWER_PERMISSIONS
    ]
    group.permissions.set(permissions)


def delete_reviewers_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name=REVIEWERS_GROUP).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("verifier", "0002_declarations"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_reviewers_group, delete_reviewers_group)]
