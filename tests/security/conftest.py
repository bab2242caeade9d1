"""Users in each staff role, as the migrations define the groups."""
from __future__ import annotations

import pytest
from django.contrib.auth.models import Group


@pytest.fixture
def reviewer(django_user_model):
    user = django_user_model.objects.create_user(username="reviewer", password="correct-horse-battery", is_staff=True)
    user.groups.add(Group.objects.get(name="Reviewers"))
    return user


@pytest.fixture
def faq_editor(django_user_model):
    user = django_user_model.objects.create_user(username="editor", password="correct-horse-battery", is_staff=True)
    user.groups.add(Group.objects.get(name="FAQ editors"))
    return user
