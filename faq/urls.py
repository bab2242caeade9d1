from django.urls import path
from django.views.i18n import set_language

from . import api, views

app_name = "faq"

urlpatterns = [
    path("ask/", views.ask, name="ask"),
    # The page's language switch (Django's view: sets the language cookie, back to `next`).
    path("language/", set_language, name="set-language"),
    path("ask/<str:token>/", views.inquiry_page, name="inquiry"),
    path("ask/<str:token>/feedback", views.feedback, name="feedback"),
    path("ask/<str:token>/escalate", views.escalate, name="escalate"),
    path("api/faq/match", api.MatchView.as_view(), name="api-match"),
    path("api/faq/inquiries", api.InquiryView.as_view(), name="api-inquiries"),
    path("api/faq/pairs", api.PairView.as_view(), name="api-pairs"),
]
