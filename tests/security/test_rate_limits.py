"""One rate-limiting mechanism for the form and every API, keyed on the client address the proxies vouch for.

Production sits behind one TLS proxy (TRUSTED_PROXY_COUNT=1): REMOTE_ADDR is the proxy, and the proxy appends
the address it saw to whatever X-Forwarded-For the client sent. Tests run with DEBUG off (pytest-django).
"""
from __future__ import annotations

import uuid

import pytest
from django.test import RequestFactory
from django.urls import reverse
from rest_framework.authtoken.models import Token

from config.client_address import client_address
from faq.models import Inquiry
from tests.security.conftest import unique_address

pytestmark = pytest.mark.django_db

PROXY = "172.18.0.2"


def made_up_address() -> str:
    return "198.51." + ".".join(str(part) for part in uuid.uuid4().bytes[:2])


def limit_rates(settings, **rates: str) -> None:
    """Lower some scopes' rates for this test (DRF re-reads its settings when they change)."""
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], **rates},
    }


def request_with(remote_address: str, forwarded_for: str | None = None):
    headers = {"HTTP_X_FORWARDED_FOR": forwarded_for} if forwarded_for is not None else {}
    return RequestFactory().get("/", REMOTE_ADDR=remote_address, **headers)


# --- the client address ----------------------------------------------------------------------------------

def test_it_ignores_x_forwarded_for_without_trusted_proxies(settings):
    settings.TRUSTED_PROXY_COUNT = 0
    assert client_address(request_with("203.0.113.7", "1.2.3.4")) == "203.0.113.7"


def test_it_takes_the_address_the_trusted_proxy_appended(settings):
    settings.TRUSTED_PROXY_COUNT = 1
    assert client_address(request_with(PROXY, "1.2.3.4, 203.0.113.7")) == "203.0.113.7"


def test_it_takes_the_nth_address_from_the_right_behind_n_proxies(settings):
    settings.TRUSTED_PROXY_COUNT = 2
    assert client_address(request_with(PROXY, "1.2.3.4, 203.0.113.7, 10.0.0.5")) == "203.0.113.7"


def test_it_falls_back_to_the_connection_when_the_proxies_wrote_too_little_or_garbage(settings):
    settings.TRUSTED_PROXY_COUNT = 2
    assert client_address(request_with(PROXY, "203.0.113.7")) == PROXY
    assert client_address(request_with(PROXY)) == PROXY
    settings.TRUSTED_PROXY_COUNT = 1
    assert client_address(request_with(PROXY, "1.2.3.4, not-an-address")) == PROXY


# --- the public inquiry API and form ---------------------------------------------------------------------

def post_inquiry(client, *, forwarded_for: str, remote_address: str = PROXY):
    return client.post(reverse("faq:api-inquiries"), {}, content_type="application/json",
                       REMOTE_ADDR=remote_address, HTTP_X_FORWARDED_FOR=forwarded_for)


def test_it_limits_the_public_inquiry_api_behind_a_proxy_however_the_client_rotates_x_forwarded_for(
    client, settings
):
    settings.TRUSTED_PROXY_COUNT = 1
    limit_rates(settings, public_inquiries="5/minute")
    customer = unique_address()
    statuses = [post_inquiry(client, forwarded_for=f"{made_up_address()}, {customer}").status_code
                for _ in range(6)]
    assert statuses == [400] * 5 + [429]
    # Another customer behind the same proxy has a limit of its own.
    assert post_inquiry(client, forwarded_for=f"{made_up_address()}, {unique_address()}").status_code == 400


def test_it_limits_the_public_inquiry_api_without_a_proxy_however_the_client_rotates_x_forwarded_for(
    client, settings
):
    settings.TRUSTED_PROXY_COUNT = 0
    limit_rates(settings, public_inquiries="5/minute")
    customer = unique_address()
    statuses = [post_inquiry(client, forwarded_for=made_up_address(), remote_address=customer).status_code
                for _ in range(6)]
    assert statuses == [400] * 5 + [429]


def test_it_limits_each_customer_of_the_form_behind_a_proxy_on_their_own(client, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    limit_rates(settings, inquiry_form="3/minute")
    first, second = unique_address(), unique_address()

    def post_form(customer: str):
        return client.post(reverse("faq:ask"), {"question": ""}, REMOTE_ADDR=PROXY,
                           HTTP_X_FORWARDED_FOR=f"{made_up_address()}, {customer}")

    assert [post_form(first).status_code for _ in range(4)] == [200, 200, 200, 429]
    assert post_form(second).status_code == 200
    assert not Inquiry.objects.exists()


def test_it_still_limits_when_the_rate_limit_cache_is_down(client, settings):
    # Nothing listens on port 9: every cache call fails at once. Counting falls back to process memory.
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": "redis://127.0.0.1:9/0",
                                   "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5}}}
    limit_rates(settings, public_inquiries="3/minute", inquiry_form="3/minute")
    customer = unique_address()
    statuses = [post_inquiry(client, forwarded_for="", remote_address=customer).status_code for _ in range(4)]
    assert statuses == [400, 400, 400, 429]
    form = [client.post(reverse("faq:ask"), {"question": ""}, REMOTE_ADDR=customer).status_code for _ in range(4)]
    assert form == [200, 200, 200, 429]


# --- token APIs: per user -------------------------------------------------------------------------------

@pytest.fixture
def token_for(django_user_model):
    def make(username: str) -> str:
        return Token.objects.create(user=django_user_model.objects.create_user(username=username)).key

    return make


@pytest.mark.parametrize(("url", "scope"), [("faq:api-match", "faq_match"), ("faq:api-pairs", "faq_pairs")])
def test_it_limits_the_faq_match_and_pair_apis_per_user(client, settings, token_for, url, scope):
    limit_rates(settings, **{scope: "3/minute"})
    first, second = token_for(f"first-{uuid.uuid4().hex[:8]}"), token_for(f"second-{uuid.uuid4().hex[:8]}")

    def call(token: str, address: str):
        return client.post(reverse(url), {}, content_type="application/json", REMOTE_ADDR=address,
                           HTTP_AUTHORIZATION=f"Token {token}").status_code

    # A new address per call: the limit follows the user, not the address.
    assert [call(first, unique_address()) for _ in range(4)] == [400, 400, 400, 429]
    assert call(second, unique_address()) == 400


def test_it_limits_every_token_api_per_user(client, settings, token_for, declarant_token):
    limit_rates(settings, user="3/minute")
    url = reverse("verifier:api-batches")
    statuses = [client.post(url, {"items": []}, content_type="application/json", REMOTE_ADDR=unique_address(),
                            HTTP_AUTHORIZATION=f"Token {declarant_token}").status_code for _ in range(4)]
    assert statuses == [400, 400, 400, 429]


# --- the admin login ------------------------------------------------------------------------------------

def log_in(client, *, password: str, forwarded_for: str):
    return client.post(reverse("admin:login"), {"username": "root", "password": password,
                                                 "next": reverse("admin:index")},
                       REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=forwarded_for)


def test_it_locks_a_client_out_of_the_admin_login_after_repeated_failures_behind_a_proxy(
    client, settings, django_user_model
):
    django_user_model.objects.create_superuser(username="root", password="correct-horse-battery")
    settings.TRUSTED_PROXY_COUNT = 1
    attacker, officer = unique_address(), unique_address()
    failures = [log_in(client, password="wrong", forwarded_for=f"{made_up_address()}, {attacker}").status_code
                for _ in range(settings.AXES_FAILURE_LIMIT)]
    # The form again with an error, until the failure that reaches the limit locks the client out.
    assert failures == [200] * (settings.AXES_FAILURE_LIMIT - 1) + [429]
    # Locked out, even with the right password, and rotating the made-up part of the header does not help.
    locked = log_in(client, password="correct-horse-battery", forwarded_for=f"{made_up_address()}, {attacker}")
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session
    # Another client behind the same proxy still logs in.
    assert log_in(client, password="correct-horse-battery", forwarded_for=officer).status_code == 302


# --- how the counts are kept ---------------------------------------------------------------------------

def test_it_counts_a_sliding_window_in_redis_and_says_how_long_to_wait():
    from django.core.cache import caches

    from config.throttling import count_in_redis

    key = f"throttle-window_test_{uuid.uuid4().hex}"
    backend = caches["default"]
    verdicts = [count_in_redis(backend, key, now=1000.0 + second, duration=60, limit=3) for second in range(4)]
    assert [allowed for allowed, _ in verdicts] == [True, True, True, False]
    assert verdicts[-1][1] == pytest.approx(57.0)  # the first request leaves the window at 1060
    # A refused request is not counted: once the first has left, one more is allowed.
    assert count_in_redis(backend, key, now=1060.5, duration=60, limit=3)[0] is True
    assert count_in_redis(backend, key, now=1060.6, duration=60, limit=3)[0] is False


def test_it_answers_a_refused_api_call_with_retry_after(client, settings, token_for):
    limit_rates(settings, faq_match="1/minute")
    token = token_for(f"retry-{uuid.uuid4().hex[:8]}")

    def call():
        return client.post(reverse("faq:api-match"), {}, content_type="application/json",
                           HTTP_AUTHORIZATION=f"Token {token}")

    assert call().status_code == 400
    refused = call()
    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 60


def test_it_reuses_one_redis_client_per_server(settings):
    from django.core.cache import caches

    settings.CACHES = {"default": {"BACKEND": "config.cache.RedisCache",
                                   "LOCATION": settings.CACHES["default"]["LOCATION"]}}
    backend = caches["default"]
    assert backend._cache.get_client() is backend._cache.get_client(write=True)
    backend.set("reused-client-check", 1, 5)
    assert backend.get("reused-client-check") == 1


def test_it_counts_several_windows_in_one_call_each_on_its_own():
    from django.core.cache import caches

    from config.throttling import count_many_in_redis

    tight, loose = (f"throttle-window_test_{uuid.uuid4().hex}" for _ in range(2))
    backend = caches["default"]
    verdicts = [count_many_in_redis(backend, [(tight, 60, 1), (loose, 60, 5)], now=1000.0 + second)
                for second in range(3)]
    assert [[allowed for allowed, _ in verdict] for verdict in verdicts] == [[True, True], [False, True],
                                                                             [False, True]]
    assert verdicts[1][0][1] == pytest.approx(59.0)
    assert count_in_window(backend, loose, now=1003.0) == 3  # the tight window's refusals did not stop it


def count_in_window(backend, key: str, *, now: float) -> int:
    client = backend._cache.get_client(key, write=True)
    return client.zcount(backend.make_and_validate_key(key), now - 60, now)


def test_it_applies_the_per_user_limit_to_the_match_api_too(client, settings, token_for):
    limit_rates(settings, user="2/minute")
    token = token_for(f"user-{uuid.uuid4().hex[:8]}")
    statuses = [client.post(reverse("faq:api-match"), {}, content_type="application/json",
                            HTTP_AUTHORIZATION=f"Token {token}").status_code for _ in range(3)]
    assert statuses == [400, 400, 429]


def test_it_still_limits_the_match_api_when_the_rate_limit_cache_is_down(client, settings, token_for):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": "redis://127.0.0.1:9/0",
                                   "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5}}}
    limit_rates(settings, faq_match="2/minute")
    token = token_for(f"down-{uuid.uuid4().hex[:8]}")
    statuses = [client.post(reverse("faq:api-match"), {}, content_type="application/json",
                            HTTP_AUTHORIZATION=f"Token {token}").status_code for _ in range(3)]
    assert statuses == [400, 400, 429]
