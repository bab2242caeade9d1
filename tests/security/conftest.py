"""Users in each role, as the migrations define the groups: none of them is a superuser, except `superuser`.

They have no password (tests log them in with force_login): hashing one costs about half a second here.
"""
from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import Group
from rest_framework.authtoken.models import Token


def staff_in(django_user_model, username: str, group: str):
    user = django_user_model.objects.create_user(username=username, is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    return user


@pytest.fixture
def reviewer(django_user_model):
    return staff_in(django_user_model, "reviewer", "Reviewers")


@pytest.fixture
def faq_editor(django_user_model):
    return staff_in(django_user_model, "editor", "FAQ editors")


@pytest.fixture
def curator(django_user_model):
    return staff_in(django_user_model, "curator", "Knowledge curators")


@pytest.fixture
def superuser(django_user_model):
    return django_user_model.objects.create_superuser(username="root", password=None)


@pytest.fixture
def declarant(django_user_model):
    """A customer's integration: not staff, in the Declarants group, calling the API with its token."""
    user = django_user_model.objects.create_user(username="customer")
    user.groups.add(Group.objects.get(name="Declarants"))
    return user


@pytest.fixture
def declarant_token(declarant) -> str:
    return Token.objects.create(user=declarant).key


def unique_address() -> str:
    """A client address no other test (or parallel run sharing the Redis cache) has used this minute."""
    return "10." + ".".join(str(part) for part in uuid.uuid4().bytes[:3])


@pytest.fixture
def address() -> str:
    return unique_address()


@pytest.fixture(autouse=True)
def rate_limits_of_its_own(settings):
    """Counts under a key prefix of this test's own: user ids repeat across test databases sharing one Redis."""
    settings.CACHES = {"default": {**settings.CACHES["default"], "KEY_PREFIX": f"test-{uuid.uuid4().hex}"}}
