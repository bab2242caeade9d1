"""Staff screens: the try-a-question box, the inbox, answering, the library actions, and who may edit."""
import pytest
from django.contrib.auth.models import Group
from django.core import mail

from faq.models import Faq, FaqWording, Inquiry


@pytest.fixture
def reviewer(django_user_model):
    user = django_user_model.objects.create_user(username="reviewer", password="pw-reviewer-1", is_staff=True)
    user.groups.add(Group.objects.get(name="Reviewers"))
    return user


def test_it_shows_top_matches_and_scores_in_the_try_a_question_box(client, staff_user, faq_library):
    client.force_login(staff_user)
    page = client.get("/admin/faq/faq/", {"question": "怎么换绑手机号?"}).content.decode()
    assert 'id="try-results"' in page and "如何修改绑定的手机号码" in page and "answered" in page


def test_it_lists_escalated_and_unhelpful_inquiries_in_the_inbox(client, staff_user, faq_library):
    Inquiry.objects.create(question="escalated one", status=Inquiry.Status.ESCALATED)
    Inquiry.objects.create(question="unhelpful one", status=Inquiry.Status.ANSWERED, helpful=False)
    Inquiry.objects.create(question="answered fine", status=Inquiry.Status.ANSWERED, helpful=True)
    client.force_login(staff_user)
    page = client.get("/admin/faq/inboxinquiry/").content.decode()
    assert "escalated one" in page and "unhelpful one" in page and "answered fine" not in page


def test_it_mails_the_answer_a_staff_member_writes(eager_tasks, client, staff_user, faq_library,
                                                   django_capture_on_commit_callbacks):
    inquiry = Inquiry.objects.create(question="Can I pay by gift card?", contact="ann@example.com",
                                     status=Inquiry.Status.ESCALATED)
    client.force_login(staff_user)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/admin/faq/inboxinquiry/{inquiry.id}/change/",
                               {"staff_answer": "Yes, at checkout.", "status": "escalated"})
    assert response.status_code == 302
    inquiry.refresh_from_db()
    assert inquiry.status == Inquiry.Status.ANSWERED and inquiry.answered_by == staff_user
    assert mail.outbox[0].to == ["ann@example.com"]


def test_it_turns_an_answer_into_a_new_faq_with_one_action(client, staff_user, faq_library):
    inquiry = Inquiry.objects.create(question="Can I pay by gift card?", staff_answer="Yes, at checkout.",
                                     status=Inquiry.Status.ANSWERED)
    client.force_login(staff_user)
    client.post("/admin/faq/inquiry/", {"action": "turn_answer_into_faq", "_selected_action": [inquiry.id]})
    faq = Faq.objects.get(question="Can I pay by gift card?")
    assert faq.answer == "Yes, at checkout." and faq.wordings.count() == 1


def test_it_adds_an_inquiry_as_a_wording_of_the_chosen_faq(client, staff_user, faq_library):
    inquiry = Inquiry.objects.create(question="我的快递一直没有动静", status=Inquiry.Status.ESCALATED)
    client.force_login(staff_user)
    form = client.post("/admin/faq/inquiry/", {"action": "add_as_wording", "_selected_action": [inquiry.id]})
    assert 'name="faq_id_manual"' in form.content.decode()
    client.post("/admin/faq/inquiry/", {"action": "add_as_wording", "_selected_action": [inquiry.id],
                                        "confirm": "1", "faq_id_manual": str(faq_library["shipping"].id)})
    assert FaqWording.objects.filter(faq=faq_library["shipping"], text="我的快递一直没有动静",
                                     source=FaqWording.Source.INQUIRY).exists()


def test_it_lets_reviewers_read_but_not_edit_the_library(client, reviewer, faq_library):
    client.force_login(reviewer)
    faq = faq_library["hours"]
    assert client.get(f"/admin/faq/faq/{faq.id}/change/").status_code == 200
    client.post(f"/admin/faq/faq/{faq.id}/change/", {"question": "changed", "answer": "changed"})
    faq.refresh_from_db()
    assert faq.question == "What are your opening hours?"
    assert client.get("/admin/faq/inboxinquiry/").status_code == 200


def test_it_refuses_library_actions_to_reviewers(client, reviewer, faq_library):
    inquiry = Inquiry.objects.create(question="q?", staff_answer="a", status=Inquiry.Status.ANSWERED)
    client.force_login(reviewer)
    client.post("/admin/faq/inquiry/", {"action": "turn_answer_into_faq", "_selected_action": [inquiry.id]})
    assert not Faq.objects.filter(question="q?").exists()
