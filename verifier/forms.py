from __future__ import annotations

from django import forms
from django.conf import settings

from .models import DeclarationBatch


class UploadForm(forms.Form):
    file = forms.FileField(help_text="CSV, JSON (an array of objects) or JSON Lines; UTF-8 or GB18030.")
    mode = forms.ChoiceField(choices=DeclarationBatch.Mode.choices, initial=DeclarationBatch.Mode.CHECK)
    reference = forms.BooleanField(
        required=False, label="Approved historical declarations (add to the knowledge base)",
    )

    def clean_file(self):
        uploaded = self.cleaned_data["file"]
        if uploaded.size > settings.UPLOAD_MAX_BYTES:
            raise forms.ValidationError(
                f"the file is {uploaded.size / 2**20:.0f} MiB; at most {settings.UPLOAD_MAX_BYTES / 2**20:.0f} MiB"
            )
        if uploaded.size == 0:
            raise forms.ValidationError("the file is empty")
        return uploaded
