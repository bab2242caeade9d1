from __future__ import annotations

from django import forms
from django.conf import settings

from .models import DeclarationBatch
from .uploads import RefusedUpload, upload_limit_reason


class UploadForm(forms.Form):
    file = forms.FileField(help_text="CSV, JSON (an array of objects) or JSON Lines; UTF-8 or GB18030.")
    mode = forms.ChoiceField(choices=DeclarationBatch.Mode.choices, initial=DeclarationBatch.Mode.CHECK)
    reference = forms.BooleanField(
        required=False, label="Approved historical declarations (add to the knowledge base)",
    )

    def clean_file(self):
        uploaded = self.cleaned_data["file"]
        # Cut off while it streamed in (verifier.uploads.SizeLimitedUploadHandler); the size check below
        # covers files given to the form some other way.
        if isinstance(uploaded, RefusedUpload):
            raise forms.ValidationError(uploaded.reason)
        if uploaded.size > settings.UPLOAD_MAX_BYTES:
            raise forms.ValidationError(upload_limit_reason(settings.UPLOAD_MAX_BYTES))
        if uploaded.size == 0:
            raise forms.ValidationError("the file is empty")
        return uploaded
