"""API tokens belong to one user each and stop working when revoked or when the user is deactivated."""
from __future__ import annotations

import pytest
from django.urls import reverse
from rest_framework.authtoken.models import Token

pytestmark = pytest.mark.django_db


@pytest.fixture
def api_user(django_user_model):
    return django_user_model.objects.create_user(username="integrator", password="x-long-password-1")


def call_api(client, token_key: str | None):
    # An empty body: an authenticated caller gets 400 (bad request), an unauthenticated one 401.
    headers = {"HTTP_AUTHORIZATION": f"Token {token_key}"} if token_key else {}
    return client.post(reverse("faq:api-pairs"), {}, content_type="application/json", **headers)


def test_it_refuses_the_api_without_a_token(client):
    assert call_api(client, None).status_code == 401


def test_it_accepts_a_users_token_and_refuses_a_made_up_one(client, api_user):
    token = Token.objects.create(user=api_user)
    assert call_api(client, token.key).status_code == 400
    assert call_api(client, "0" * 40).status_code == 401


def test_it_gives_each_user_a_token_of_their_own(django_user_model, api_user):
    other = django_user_model.objects.create_user(username="other", password="x-long-password-2")
    first, second = Token.objects.create(user=api_user), Token.objects.create(user=other)
    assert first.key != second.key
    assert Token.objects.get(key=first.key).user == api_user


def test_it_stops_accepting_a_revoked_token(client, api_user):
    token = Token.objects.create(user=api_user)
    assert call_api(client, token.key).status_code == 400
    token.delete()
    assert call_api(client, token.key).status_code == 401


def test_it_stops_accepting_the_token_of_a_deactivated_user(client, api_user):
    token = Token.objects.create(user=api_user)
    api_user.is_active = False
    api_user.save()
    assert call_api(client, token.key).status_code == 401


def test_it_authenticates_the_tokens_user_with_every_field_and_the_token_itself(api_user):
    from rest_framework.test import APIRequestFactory

    from config.authentication import SqlTokenAuthentication

    token = Token.objects.create(user=api_user)
    request = APIRequestFactory().post("/", HTTP_AUTHORIZATION=f"Token {token.key}")
    user, auth = SqlTokenAuthentication().authenticate(request)
    assert (user.pk, user.username, user.is_active, user.is_staff) == (api_user.pk, "integrator", True, False)
    assert user.check_password("x-long-password-1")
    assert (auth.key, auth.user_id, auth.created, auth.user) == (token.key, api_user.pk, token.created, user)
