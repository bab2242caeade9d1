"""The JSON API: match (token auth), public inquiries (throttled), pair similarity, and its OpenAPI schema."""
import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient


@pytest.fixture
def api(staff_user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=staff_user).key}")
    return client


def test_it_matches_a_question_with_scores_and_the_answer_in_the_customers_language(api, faq_library):
    response = api.post("/api/faq/match", {"question": "How can I change the mobile number linked to my account?"},
                        format="json")
    assert response.status_code == 200
    best = response.json()["candidates"][0]
    assert best["faq_id"] == faq_library["phone"].id and best["answer_language"] == "en"
    assert 0 < best["score"] <= 1


def test_it_shows_each_answer_in_the_customers_language_where_the_faq_has_it(api, faq_library):
    phone = faq_library["phone"]  # a Chinese FAQ with an English translation of its answer

    def best_answer(language: str) -> dict:
        response = api.post("/api/faq/match", {"question": "怎么换绑手机号?", "language": language}, format="json")
        return next(c for c in response.json()["candidates"] if c["faq_id"] == phone.id)

    assert (best_answer("en")["answer"], best_answer("en")["answer_language"]) == phone.answer_in("en")
    assert phone.answer_in("en")[1] == "en" and phone.language == "zh"
    assert (best_answer("zh")["answer"], best_answer("zh")["answer_language"]) == (phone.answer, "zh")
    assert (best_answer("fr")["answer"], best_answer("fr")["answer_language"]) == (phone.answer, "zh")
    assert best_answer("en")["question"] == phone.question


def test_it_refuses_to_match_for_anonymous_callers(faq_library):
    assert APIClient().post("/api/faq/match", {"question": "hi"}, format="json").status_code in (401, 403)


def test_it_takes_a_public_inquiry_and_answers_it(faq_library):
    response = APIClient().post("/api/faq/inquiries", {"question": "怎么换绑手机号?"}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "answered" and body["answer"] == faq_library["phone"].answer and body["matched"]


def test_it_says_what_is_wrong_with_a_bad_inquiry(db):
    response = APIClient().post("/api/faq/inquiries", {"question": "x" * 1001}, format="json")
    assert response.status_code == 400 and "question" in response.json()


def test_it_answers_503_when_the_embedding_endpoint_is_down(api, faq_library, embedding_endpoint):
    embedding_endpoint.down()
    assert api.post("/api/faq/match", {"question": "something new"}, format="json").status_code == 503


def test_it_decides_whether_two_texts_mean_the_same(api, db):
    same = api.post("/api/faq/pairs", {"text1": "怎么换绑手机号?", "text2": "如何修改绑定的手机号码"},
                    format="json").json()
    other = api.post("/api/faq/pairs", {"text1": "怎么换绑手机号?", "text2": "What are your opening hours?"},
                     format="json").json()
    assert same["same_meaning"] and not other["same_meaning"]
    assert same["threshold"] == other["threshold"] and same["score"] > other["score"]


def test_it_describes_its_endpoints_in_the_openapi_schema(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    assert {"/api/faq/match", "/api/faq/inquiries", "/api/faq/pairs"} <= set(schema["paths"])


@pytest.fixture
def reranker(settings):
    from tests.support.reranker_double import run_reranker_double

    with run_reranker_double() as double:
        settings.RERANKER_BASE_URL, settings.RERANKER_CANDIDATES = double.base_url, 4
        yield double


def test_it_reranks_the_candidates_when_a_reranker_is_configured(api, faq_library, reranker):
    response = api.post("/api/faq/match", {"question": "How can I change the mobile number linked to my account?",
                                           "top_k": 2}, format="json")
    body = response.json()
    assert response.status_code == 200 and body["method"].endswith("+rerank")
    scores = [candidate["rerank_score"] for candidate in body["candidates"]]
    assert len(scores) == 2 and scores == sorted(scores, reverse=True)
    # It saw the configured number of first-stage candidates, as their FAQ questions.
    asked = reranker.requests[-1]
    assert asked["query"] == "How can I change the mobile number linked to my account?"
    assert len(asked["documents"]) == 4 and faq_library["phone"].question in asked["documents"]


def test_it_keeps_the_first_stage_ranking_when_the_reranker_fails(api, faq_library, reranker):
    reranker.failure = "503"
    response = api.post("/api/faq/match", {"question": "How can I change the mobile number linked to my account?"},
                        format="json")
    body = response.json()
    assert response.status_code == 200 and not body["method"].endswith("+rerank")
    assert body["candidates"][0]["faq_id"] == faq_library["phone"].id
    assert len(body["candidates"]) == 3 and all(c["rerank_score"] is None for c in body["candidates"])
