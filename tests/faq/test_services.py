"""The library, matching by meaning with the real CPU model, and the inquiry life cycle."""
import pytest
from django.core import mail

from faq import selectors, services
from faq.models import Faq, FaqWording, Inquiry


def test_it_matches_a_chinese_paraphrase_to_its_faq(faq_library):
    match = selectors.match_questions(questions=["怎么换绑手机号?"])[0]
    assert match.answered
    assert match.best.faq_id == faq_library["phone"].id


def test_it_matches_an_english_question_to_a_chinese_faq(faq_library):
    match = selectors.match_questions(questions=["How can I change the mobile number linked to my account?"])[0]
    assert match.best.faq_id == faq_library["phone"].id


def test_it_answers_in_the_customers_language_where_the_faq_has_a_translation(faq_library):
    english = services.submit_inquiry(question="How can I change the mobile number linked to my account?")
    chinese = services.submit_inquiry(question="怎么换绑手机号?")
    assert english.matched_faq.answer_in(english.language)[1] == "en"
    assert chinese.matched_faq.answer_in(chinese.language) == (faq_library["phone"].answer, "zh")


def test_it_offers_suggestions_instead_of_answering_a_vague_question(faq_library):
    inquiry = services.submit_inquiry(question="help")
    assert inquiry.status == Inquiry.Status.RECEIVED and inquiry.matched_at is not None
    assert inquiry.matched_faq is None
    assert 1 <= len(inquiry.suggestions) <= 3


def test_it_groups_repeated_faq_ids_into_wordings_and_reports_bad_rows(db):
    report = services.import_faqs(rows=[
        {"faq_id": "a", "question": "How do I close my account?", "answer": "Write to us."},
        {"faq_id": "a", "question": "I want to delete my account"},
        {"faq_id": "", "question": "orphan"},
        {"faq_id": "b", "question": "  "},
    ])
    assert report.faqs_created == 1 and report.wordings_created == 2
    assert report.errors == ["row 4: faq_id is empty", "row 5: question is empty (faq_id 'b')"]
    faq = Faq.objects.get(external_id="a")
    assert faq.answer == "Write to us."
    assert set(faq.wordings.values_list("text", flat=True)) == {"How do I close my account?",
                                                                 "I want to delete my account"}


def test_it_does_not_duplicate_wordings_when_the_same_file_is_imported_again(db):
    rows = [{"faq_id": "a", "question": "How do I close my account?"}, {"faq_id": "a", "question": "Delete account"}]
    services.import_faqs(rows=rows)
    report = services.import_faqs(rows=rows)
    assert report.faqs_updated == 1 and report.wordings_created == 0
    assert FaqWording.objects.count() == 2


def test_it_saves_the_inquiry_when_the_embedding_endpoint_is_down_and_matches_it_later(faq_library,
                                                                                       embedding_endpoint):
    embedding_endpoint.down()
    inquiry = services.submit_inquiry(question="怎么换绑手机号?", contact="li@example.com")
    assert Inquiry.objects.filter(id=inquiry.id, matched_at__isnull=True, status="received").exists()
    assert services.match_pending_inquiries() == 0  # still down: stays pending, nothing lost

    embedding_endpoint.up()
    assert services.match_pending_inquiries() == 1
    inquiry.refresh_from_db()
    assert inquiry.status == Inquiry.Status.ANSWERED and inquiry.matched_faq == faq_library["phone"]
    assert inquiry.match_attempts == 2


def test_it_mails_the_answer_of_an_inquiry_matched_later(eager_tasks, faq_library, django_capture_on_commit_callbacks):
    Inquiry.objects.create(question="怎么换绑手机号?", contact="li@example.com", language="zh")
    with django_capture_on_commit_callbacks(execute=True):
        services.match_pending_inquiries()
    assert len(mail.outbox) == 1 and faq_library["phone"].answer in mail.outbox[0].body


def test_it_escalates_to_staff_what_the_worker_cannot_answer(faq_library):
    inquiry = Inquiry.objects.create(question="help", language="en")
    services.match_pending_inquiries()
    inquiry.refresh_from_db()
    assert inquiry.status == Inquiry.Status.ESCALATED


def test_it_sends_an_unhelpful_answer_to_the_staff_inbox(faq_library):
    inquiry = services.submit_inquiry(question="怎么换绑手机号?")
    services.record_feedback(inquiry_id=inquiry.id, helpful=False)
    assert list(selectors.inbox_inquiries()) == [Inquiry.objects.get(id=inquiry.id)]


def test_it_mails_a_staff_answer_after_commit(eager_tasks, faq_library, staff_user, django_capture_on_commit_callbacks):
    inquiry = services.submit_inquiry(question="Can I pay with a gift card?", contact="ann@example.com", name="Ann")
    with django_capture_on_commit_callbacks(execute=True):
        services.answer_inquiry(inquiry_id=inquiry.id, answer="Yes, at checkout.", staff_user=staff_user)
    inquiry.refresh_from_db()
    assert inquiry.status == Inquiry.Status.ANSWERED and inquiry.answered_by == staff_user
    assert mail.outbox[0].to == ["ann@example.com"] and "Yes, at checkout." in mail.outbox[0].body


def test_it_turns_a_staff_answer_into_an_faq_that_matches_once_indexed(faq_library, staff_user):
    inquiry = services.submit_inquiry(question="Can I pay with a gift card?")
    services.answer_inquiry(inquiry_id=inquiry.id, answer="Yes, at checkout.", staff_user=staff_user)
    faq = services.create_faq_from_inquiry(inquiry_id=inquiry.id, staff_user=staff_user)
    assert services.index_wordings() == 1
    match = selectors.match_questions(questions=["Is paying by gift card possible?"])[0]
    assert match.best.faq_id == faq.id


def test_it_adds_an_inquiry_as_a_wording_of_an_existing_faq(faq_library):
    inquiry = services.submit_inquiry(question="我的快递一直没有动静")
    services.add_inquiry_as_wording(inquiry_id=inquiry.id, faq_id=faq_library["shipping"].id)
    assert services.index_wordings() == 1
    match = selectors.match_questions(questions=["我的快递一直没有动静"])[0]
    assert match.answered and match.best.faq_id == faq_library["shipping"].id


def test_it_refuses_an_empty_staff_answer(faq_library, staff_user):
    inquiry = services.submit_inquiry(question="help")
    with pytest.raises(ValueError, match="empty"):
        services.answer_inquiry(inquiry_id=inquiry.id, answer="  ", staff_user=staff_user)


def test_it_never_returns_a_deactivated_faq(faq_library):
    Faq.objects.filter(id=faq_library["phone"].id).update(active=False)
    match = selectors.match_questions(questions=["怎么换绑手机号?"])[0]
    assert faq_library["phone"].id not in [candidate.faq_id for candidate in match.candidates]


def test_it_scores_pairs_of_the_same_meaning_above_unrelated_pairs(db):
    same, different = selectors.pair_similarity(pairs=[("怎么换绑手机号?", "如何修改绑定的手机号码"),
                                                       ("怎么换绑手机号?", "What are your opening hours?")])
    assert same.score > different.score
    assert same.same_meaning and not different.same_meaning


def test_it_learns_a_classifier_once_the_library_has_enough_wordings(db):
    wordings = {
        "card": ["My card has not arrived", "Where is my new card?", "Card still not delivered",
                 "When will my card come?"],
        "refund": ["I want my money back", "How do I get a refund?", "Refund for a returned item",
                   "Can I be reimbursed?"],
        "password": ["I forgot my password", "Reset my password", "Cannot log in, lost password",
                     "How to change my password?"],
    }
    services.import_faqs(rows=[{"faq_id": faq_id, "question": text}
                               for faq_id, texts in wordings.items() for text in texts])
    services.index_wordings()
    classifier = services.refit_classifier()
    assert classifier is not None and classifier.wording_count == 12
    assert sorted(classifier.faq_ids) == sorted(Faq.objects.values_list("id", flat=True))
    match = selectors.match_questions(questions=["my card never showed up"])[0]
    assert match.method == "classifier"
    assert match.best.faq_id == Faq.objects.get(external_id="card").id
