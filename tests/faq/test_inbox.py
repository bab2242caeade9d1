"""The staff inbox a person can work: repeats grouped with a count, readable confidences, linked suggestions."""
import re

import pytest
from django.contrib.auth.models import Group

from faq import selectors
from faq.models import Inquiry


@pytest.fixture
def staff_user(django_user_model):
    """A reviewer (not a superuser): the role that works the inbox."""
    user = django_user_model.objects.create_user(username="inbox-reviewer", password="pw-reviewer-1", is_staff=True)
    user.groups.add(Group.objects.get(name="Reviewers"))
    return user


def inbox_page(client, staff_user) -> str:
    client.force_login(staff_user)
    response = client.get("/admin/faq/inboxinquiry/")
    assert response.status_code == 200
    return response.content.decode()


def test_the_same_question_asked_again_is_one_row_with_a_count(client, staff_user, faq_library):
    for question in ("Can I pay by gift card?", "can i pay by gift card", "  CAN I PAY BY GIFT CARD?? ",
                     "我可以用礼品卡付款吗？", "我可以用礼品卡付款吗"):
        Inquiry.objects.create(question=question, status=Inquiry.Status.ESCALATED)
    Inquiry.objects.create(question="Do you ship to Norway?", status=Inquiry.Status.ESCALATED)
    rows = {row.question.strip().lower().rstrip("?？"): row.asked for row in selectors.inbox_inquiries()}
    assert rows == {"can i pay by gift card": 3, "我可以用礼品卡付款吗": 2, "do you ship to norway": 1}
    page = inbox_page(client, staff_user)
    assert page.count('name="_selected_action"') == 3 and re.search(r'class="field-asked">3<', page)


def test_confidences_have_two_decimals_and_suggestions_are_links(client, staff_user, faq_library):
    phone = faq_library["phone"]
    inquiry = Inquiry.objects.create(
        question="手机号", status=Inquiry.Status.ESCALATED, match_confidence=0.8426788547076252,
        suggestions=[{"faq_id": phone.id, "question": phone.question, "score": 0.84, "confidence": 0.8426788547076252}],
    )
    page = inbox_page(client, staff_user)
    assert '<td class="field-confidence">0.84</td>' in page and "0.8426788547076252" not in page
    client.force_login(staff_user)
    detail = client.get(f"/admin/faq/inboxinquiry/{inquiry.id}/change/").content.decode()
    assert f'<li><a href="/admin/faq/faq/{phone.id}/change/">{phone.question}</a> (0.84)</li>' in detail
    assert "[{&quot;faq_id&quot;" not in detail


def test_the_inbox_sorts_by_every_column(client, staff_user, faq_library):
    for question in ("Can I pay by gift card?", "can i pay by gift card", "Do you ship to Norway?"):
        Inquiry.objects.create(question=question, status=Inquiry.Status.ESCALATED, match_confidence=0.5)
    client.force_login(staff_user)
    for column in range(1, 11):
        for order in (str(column), f"-{column}"):
            response = client.get("/admin/faq/inboxinquiry/", {"o": order})
            assert response.status_code == 200, order
            assert response.content.decode().count('name="_selected_action"') == 2
