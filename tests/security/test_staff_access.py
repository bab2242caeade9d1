"""Staff pages need a login and the right group: Reviewers review, but cannot edit the FAQ library or thresholds."""
from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission
from django.urls import reverse

pytestmark = pytest.mark.django_db

EDITING_PAGES = [
    "admin:verifier_routingthreshold_add",
    "admin:verifier_glossaryterm_add",
    "admin:faq_faq_add",
]


@pytest.mark.parametrize("page", ["admin:index", "admin:verifier_declarationitem_changelist",
                                  "admin:verifier_routingthreshold_changelist", "admin:faq_faq_changelist"])
def test_it_sends_an_anonymous_visitor_to_the_login_page(client, page):
    response = client.get(reverse(page))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_it_keeps_a_logged_in_user_who_is_not_staff_out_of_the_admin(client, django_user_model):
    client.force_login(django_user_model.objects.create_user(username="customer", password="x-long-password-1"))
    response = client.get(reverse("admin:verifier_declarationitem_changelist"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_it_lets_a_reviewer_open_the_review_queue(client, reviewer):
    client.force_login(reviewer)
    assert client.get(reverse("admin:verifier_declarationitem_changelist")).status_code == 200


@pytest.mark.parametrize("page", EDITING_PAGES)
def test_it_forbids_a_reviewer_to_add_to_the_faq_library_thresholds_or_glossary(client, reviewer, page):
    client.force_login(reviewer)
    assert client.get(reverse(page)).status_code == 403


def test_it_forbids_a_reviewer_to_post_a_new_threshold(client, reviewer):
    from verifier.models import RoutingThreshold

    client.force_login(reviewer)
    response = client.post(reverse("admin:verifier_routingthreshold_add"), {"chapter": "84"})
    assert response.status_code == 403
    assert not RoutingThreshold.objects.exists()


def test_it_lets_a_reviewer_edit_thresholds_once_granted(client, reviewer):
    reviewer.user_permissions.add(Permission.objects.get(codename="add_routingthreshold"))
    client.force_login(reviewer)
    assert client.get(reverse("admin:verifier_routingthreshold_add")).status_code == 200


def test_it_gives_the_reviewers_group_both_the_customs_review_and_the_faq_inquiry_permissions():
    # Two apps' migrations each grant permissions to "Reviewers"; neither may wipe the other's.
    codenames = set(Group.objects.get(name="Reviewers").permissions.values_list("codename", flat=True))
    assert {"add_review", "view_declarationitem"} <= codenames
    assert {"view_inquiry", "change_inquiry", "view_faq"} <= codenames
    assert not codenames & {"add_faq", "change_faq", "delete_faq", "add_routingthreshold",
                            "change_routingthreshold", "change_declarationitem", "change_verdict"}


def test_it_lets_an_faq_editor_edit_the_library_but_not_thresholds(client, faq_editor):
    client.force_login(faq_editor)
    assert client.get(reverse("admin:faq_faq_add")).status_code == 200
    assert client.get(reverse("admin:verifier_routingthreshold_add")).status_code == 403
