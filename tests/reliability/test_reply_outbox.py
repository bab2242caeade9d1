"""Replies to customers go through an outbox: an SMTP failure or a crash after the answer loses none.

The answer and its OutgoingReply row commit together; a worker claims due rows, sends them and
retries with backoff; a reply that cannot be sent ends `failed` with the error, shown in the staff inbox.
"""
from __future__ import annotations

import smtplib
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from faq import services
from faq.models import Inquiry, OutgoingReply

pytestmark = pytest.mark.django_db


@pytest.fixture
def officer(django_user_model):
    from django.contrib.auth.models import Group, Permission

    user = django_user_model.objects.create_user(username="inbox-officer", password="x" * 16, is_staff=True)
    group, _ = Group.objects.get_or_create(name="Inbox officers (test)")
    group.permissions.add(*Permission.objects.filter(content_type__app_label="faq",
                                                      codename__in=["view_inquiry", "change_inquiry",
                                                                    "view_inboxinquiry", "change_inboxinquiry"]))
    user.groups.add(group)
    return user


def escalated(contact: str = "ann@example.com") -> Inquiry:
    return Inquiry.objects.create(question="Can I pay by gift card?", name="Ann", contact=contact,
                                  status=Inquiry.Status.ESCALATED)


class FlakyMailServer:
    """Django's mail backend that refuses the next `failures` messages, as an SMTP server that is down."""

    def __init__(self, monkeypatch, failures: int) -> None:
        self.failures = failures
        real_send = services.send_mail

        def send_mail(**arguments):
            if self.failures:
                self.failures -= 1
                raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
            return real_send(**arguments)

        monkeypatch.setattr(services, "send_mail", send_mail)


def make_due(reply: OutgoingReply) -> None:
    OutgoingReply.objects.filter(pk=reply.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))


def test_a_reply_survives_a_crash_between_the_answer_commit_and_the_send(officer, django_capture_on_commit_callbacks):
    inquiry = escalated()
    # The web process commits the answer, then dies before its on-commit message reaches the broker.
    with django_capture_on_commit_callbacks(execute=False):
        services.answer_inquiry(inquiry_id=inquiry.id, answer="Yes, at checkout.", staff_user=officer)
    assert mail.outbox == []

    assert services.send_pending_replies() == 1  # what the periodic job does a minute later

    assert [message.to for message in mail.outbox] == [["ann@example.com"]]
    assert "Yes, at checkout." in mail.outbox[0].body
    reply = OutgoingReply.objects.get(inquiry=inquiry)
    assert (reply.state, reply.attempts) == (OutgoingReply.State.SENT, 1)
    assert services.send_pending_replies() == 0  # sent once


def test_an_smtp_failure_is_retried_with_backoff_and_then_sent(officer, monkeypatch):
    FlakyMailServer(monkeypatch, failures=2)
    inquiry = escalated()
    services.answer_inquiry(inquiry_id=inquiry.id, answer="Yes, at checkout.", staff_user=officer)
    reply = OutgoingReply.objects.get(inquiry=inquiry)

    assert services.send_pending_replies() == 0
    reply.refresh_from_db()
    assert (reply.state, reply.attempts) == (OutgoingReply.State.PENDING, 1)
    assert "SMTPServerDisconnected" in reply.last_error
    assert reply.next_attempt_at > timezone.now() + timedelta(seconds=30)
    assert services.send_pending_replies() == 0  # not due yet: the backoff holds

    make_due(reply)
    services.send_pending_replies()
    reply.refresh_from_db()
    first_wait = reply.next_attempt_at - timezone.now()
    assert reply.attempts == 2 and first_wait > timedelta(seconds=90)  # the wait doubles

    make_due(reply)
    assert services.send_pending_replies() == 1
    reply.refresh_from_db()
    assert (reply.state, reply.attempts, reply.last_error) == (OutgoingReply.State.SENT, 3, "")
    assert len(mail.outbox) == 1


def test_a_reply_that_cannot_be_sent_ends_failed_and_the_inbox_shows_it(officer, monkeypatch, client):
    FlakyMailServer(monkeypatch, failures=1000)
    inquiry = escalated()
    services.answer_inquiry(inquiry_id=inquiry.id, answer="Yes, at checkout.", staff_user=officer)
    reply = OutgoingReply.objects.get(inquiry=inquiry)
    for _ in range(services.MAX_REPLY_ATTEMPTS):
        make_due(reply)
        services.send_pending_replies()

    reply.refresh_from_db()
    assert (reply.state, reply.attempts) == (OutgoingReply.State.FAILED, services.MAX_REPLY_ATTEMPTS)
    make_due(reply)
    assert services.send_pending_replies() == 0  # ends: no further tries

    Inquiry.objects.filter(pk=inquiry.pk).update(status=Inquiry.Status.ESCALATED)  # back in the inbox
    client.force_login(officer)
    page = client.get("/admin/faq/inboxinquiry/").content.decode()
    assert "reply failed" in page
    detail = client.get(f"/admin/faq/inboxinquiry/{inquiry.pk}/change/").content.decode()
    assert "SMTPServerDisconnected" in detail


def test_a_send_whose_worker_died_is_claimed_again_after_the_timeout(officer):
    inquiry = escalated()
    services.answer_inquiry(inquiry_id=inquiry.id, answer="Yes, at checkout.", staff_user=officer)
    reply = OutgoingReply.objects.get(inquiry=inquiry)
    # A worker claimed it and died before sending.
    OutgoingReply.objects.filter(pk=reply.pk).update(state=OutgoingReply.State.SENDING, attempts=1,
                                                     claimed_at=timezone.now())
    assert services.send_pending_replies() == 0  # a live send is left alone

    OutgoingReply.objects.filter(pk=reply.pk).update(
        claimed_at=timezone.now() - timedelta(seconds=services.REPLY_SENDING_TIMEOUT_SECONDS + 1))
    assert services.send_pending_replies() == 1
    reply.refresh_from_db()
    assert (reply.state, reply.attempts) == (OutgoingReply.State.SENT, 2)


def test_no_reply_is_queued_for_a_contact_that_is_no_address(officer):
    inquiry = escalated(contact="+44 20 7946 0000")
    services.answer_inquiry(inquiry_id=inquiry.id, answer="Yes.", staff_user=officer)
    assert not OutgoingReply.objects.exists()
