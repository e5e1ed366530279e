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


COST_LABELS = {
    "residential": "Residential placement",
    "foster": "Foster placement",
    "kinship": "Kinship placement",
    "other": "Other placement",
    "cp_plan": "Child protection plan",
}


class ScenarioForm(forms.Form):
    """A planner's levers and unit costs (`forecast.scenarios.Scenario`); percentages in the form,
    shares in the scenario.  Defaults: the baseline with the cited unit costs."""

    early_help_k = forms.IntegerField(
        label="Early help reaches the top k children each month (k)",
        min_value=0, max_value=2000, initial=0,
    )  # fmt: skip
    risk_reduction = forms.FloatField(
        label="and reduces their risk by (%)", min_value=0, max_value=100, initial=0
    )
    referral_rise = forms.FloatField(
        label="Referrals change by (%)", min_value=-50, max_value=100, initial=0
    )
    residential_to_foster = forms.FloatField(
        label="New residential placements made in foster care instead (%)",
        min_value=0, max_value=100, initial=0,
    )  # fmt: skip
    inflation = forms.FloatField(
        label="Cost inflation a year from each cost's price year (%)",
        min_value=0, max_value=20, initial=2,
    )  # fmt: skip
    name = forms.CharField(label="Save as (name)", max_length=80, required=False)

    def __init__(self, *args, **kwargs):
        from forecast.scenarios import DEFAULT_COSTS

        super().__init__(*args, **kwargs)
        for key, cost in DEFAULT_COSTS.items():
            label = COST_LABELS.get(key, key)
            per = "per new plan" if key == "cp_plan" else "a child-year"
            self.fields[f"{key}_low"] = forms.FloatField(
                label=f"{label}: low (£ {per}, {cost.price_year} prices)",
                min_value=0, max_value=2_000_000, initial=cost.low,
            )  # fmt: skip
            self.fields[f"{key}_high"] = forms.FloatField(
                label=f"{label}: high (£ {per}, {cost.price_year} prices)",
                min_value=0, max_value=2_000_000, initial=cost.high,
            )  # fmt: skip

    @classmethod
    def with_defaults(cls, data) -> ScenarioForm:
        """A bound form: each lever or cost missing from `data` takes its default."""
        defaults = {name: f.initial for name, f in cls().fields.items() if f.initial is not None}
        given = {k: v for k, v in data.items() if k in defaults or k == "name"}
        return cls({**defaults, **given})

    def clean_name(self) -> str:
        return _no_identifiers(self.cleaned_data.get("name", "").strip())

    def clean(self):
        data = super().clean()
        from forecast.scenarios import DEFAULT_COSTS

        for key in DEFAULT_COSTS:
            lo, hi = data.get(f"{key}_low"), data.get(f"{key}_high")
            if lo is not None and hi is not None and lo > hi:
                self.add_error(f"{key}_high", "The high cost must be at least the low cost.")
        if not self.errors:  # the scenario's own range checks, for every caller of the form
            for problem in self.scenario().check():
                self.add_error(None, problem)
        return data

    def scenario(self):
        """The cleaned levers as a `forecast.scenarios.Scenario`."""
        from forecast.scenarios import DEFAULT_COSTS, Scenario

        d = self.cleaned_data
        return Scenario(
            early_help_k=int(d["early_help_k"]),
            risk_reduction=d["risk_reduction"] / 100,
            referral_rise=d["referral_rise"] / 100,
            residential_to_foster=d["residential_to_foster"] / 100,
            inflation=d["inflation"] / 100,
            costs={k: (d[f"{k}_low"], d[f"{k}_high"]) for k in DEFAULT_COSTS},
        )

    def params(self) -> dict:
        """The levers and costs as saved (the form's own fields, without the name)."""
        return {k: v for k, v in self.cleaned_data.items() if k != "name"}
