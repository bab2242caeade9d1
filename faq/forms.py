from django import forms
from django.utils.translation import gettext_lazy as _

from .services import MAX_QUESTION_LENGTH


class InquiryForm(forms.Form):
    question = forms.CharField(
        min_length=3, max_length=MAX_QUESTION_LENGTH, strip=True,
        widget=forms.Textarea(attrs={"rows": 4, "maxlength": MAX_QUESTION_LENGTH, "required": True}),
    )
    name = forms.CharField(max_length=100, required=False, strip=True)
    contact = forms.CharField(max_length=200, required=False, strip=True)


class FeedbackForm(forms.Form):
    helpful = forms.ChoiceField(choices=[("yes", _("Yes")), ("no", _("No"))])
