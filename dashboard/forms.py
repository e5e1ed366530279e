"""Forms of the analysts' workflow: review decisions, judge-first views, link decisions and
identification requests.  Free text is checked to hold no date or long number (a child's
identifiers belong with the agencies, not in the app)."""

from __future__ import annotations

import re

from django import forms

from dashboard.models import JudgeFirstView, LinkDecision, ReviewDecision

_IDENTIFYING = re.compile(
    r"\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}|\d{6,}|\b[A-Z]{1,2}\d[A-Z\d]?\s*\d[A-Z]{2}\b", re.I
)


def _no_identifiers(text: str) -> str:
    text = text.strip()
    if _IDENTIFYING.search(text):
        raise forms.ValidationError(
            "Leave out dates, postcodes and long numbers: the reason must not identify the child."
        )
    return text


class _Radios:
    """Radio choices without Django's blank '---------' option (a choice is required)."""

    radio_field = ""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields[self.radio_field]
        field.choices = [c for c in field.choices if c[0] != ""]


class DecisionForm(_Radios, forms.ModelForm):
    radio_field = "decision"

    class Meta:
        model = ReviewDecision
        fields = ["decision", "reason"]
        widgets = {"decision": forms.RadioSelect, "reason": forms.Textarea(attrs={"rows": 3})}
        labels = {"decision": "Decision", "reason": "Reason (kept with the score that prompted it)"}

    def clean_reason(self) -> str:
        text = _no_identifiers(self.cleaned_data["reason"])
        if len(text) < 10:
            raise forms.ValidationError("Give a reason of at least ten characters.")
        return text


class JudgeFirstForm(_Radios, forms.ModelForm):
    radio_field = "concern"

    class Meta:
        model = JudgeFirstView
        fields = ["concern", "note"]
        widgets = {"concern": forms.RadioSelect, "note": forms.Textarea(attrs={"rows": 2})}
        labels = {"concern": "Your view, before seeing the score", "note": "Note (optional)"}

    def clean_note(self) -> str:
        return _no_identifiers(self.cleaned_data.get("note", ""))


class LinkDecisionForm(_Radios, forms.ModelForm):
    radio_field = "decision"

    class Meta:
        model = LinkDecision
        fields = ["decision", "reason"]
        widgets = {"decision": forms.RadioSelect, "reason": forms.Textarea(attrs={"rows": 2})}
        labels = {"decision": "Are these records the same child?", "reason": "Reason (optional)"}

    def clean_reason(self) -> str:
        return _no_identifiers(self.cleaned_data.get("reason", ""))


class IdentificationForm(forms.Form):
    purpose = forms.CharField(
        label="Why identification is needed (the agencies will see this)",
        widget=forms.Textarea(attrs={"rows": 3}),
        min_length=20,
    )

    def clean_purpose(self) -> str:
        return _no_identifiers(self.cleaned_data["purpose"])
