"""The FAQ editors group changes the library; everyone else on staff may only read it (Reviewers: 0004)."""
from django.contrib.auth.management import create_permissions
from django.db import migrations

EDITOR_PERMISSIONS = [
    f"{action}_{model}" for model in ("faq", "faqwording", "faqtranslation") for action in ("add", "change", "delete", "view")
]


def create_groups(apps, schema_editor):
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name="FAQ editors")
    group.permissions.add(*Permission.objects.filter(content_type__app_label="faq", codename__in=EDITOR_PERMISSIONS))


class Migration(migrations.Migration):
    dependencies = [("faq", "0001_initial"), ("auth", "0012_alter_user_first_name_max_length"),
                    ("contenttypes", "0002_remove_content_type_name")]

    operations = [migrations.RunPython(create_groups, migrations.RunPython.noop)]
