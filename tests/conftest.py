"""Shared fixtures. The database is the real embedded PostgreSQL/pgvector (or DATABASE_URL)."""
from __future__ import annotations

import pytest


@pytest.fixture
def staff_user(django_user_model):
    return django_user_model.objects.create_user(
        username="officer", password="correct-horse-battery", is_staff=True, is_superuser=True
    )


def pytest_unconfigure(config):
    """Stop the embedded services this test run started (a developer's running ones are left alone)."""
    from devservices.lifecycle import stop_services_started_here

    stop_services_started_here()
