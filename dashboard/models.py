"""The app's own state, in its own database (never the warehouse).

Owns:

* `AuditEntry`: the append-only audit log (who, when, what, from where).  The model refuses
  updates and deletes, the database refuses them too (triggers, migration 0002), and the admin
  shows it read-only;
* `ReviewDecision`: an analyst's decision about a child, kept with the score that prompted it;
* `JudgeFirstView`: an analyst's own view recorded before the score was revealed;
* `LinkDecision`: an accept/reject on an uncertain link, handed to the linkage unit as a file;
* `IdentificationRequest`: an audited request to the agencies holding a child's records;
* `Preference`: per-user settings (judge-first mode);
* `SavedScenario`: a planner's saved scenario (name and levers), private to its owner.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class AppendOnlyError(RuntimeError):
    """Raised on an attempt to change or delete an audit entry."""


class AuditEntry(models.Model):
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    #: the user name at the time (kept as text: an entry outlives its user)
    username = models.CharField(max_length=150, db_index=True)
    role = models.CharField(max_length=20, blank=True)
    action = models.CharField(max_length=40, db_index=True)
    #: what was touched: a child id, a pair id, a page; never a search term's matches
    target = models.CharField(max_length=200, blank=True, db_index=True)
    detail = models.JSONField(default=dict, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    path = models.CharField(max_length=300, blank=True)
    status = models.PositiveSmallIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name_plural = "audit entries"
        default_permissions = ("view",)

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise AppendOnlyError("the audit log is append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("the audit log is append-only")


class ReviewDecision(models.Model):
    DECISIONS = [
        ("refer_early_help", "Refer to early help"),
        ("already_known", "Already known to services"),
        ("no_action", "No action"),
        ("link_looks_wrong", "Link looks wrong"),
    ]
    child_id = models.CharField(max_length=64, db_index=True)
    decision = models.CharField(max_length=30, choices=DECISIONS)
    reason = models.TextField()
    analyst = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    decided_at = models.DateTimeField(auto_now_add=True)
    # the score that prompted it (from the snapshot at decision time)
    score = models.FloatField(null=True)
    rank = models.IntegerField(null=True)
    band = models.CharField(max_length=30, blank=True)
    model_version = models.CharField(max_length=64, blank=True)
    as_of = models.CharField(max_length=32, blank=True)
    publish_id = models.CharField(max_length=64, blank=True)
    judged_first = models.ForeignKey(
        "JudgeFirstView", null=True, blank=True, on_delete=models.PROTECT
    )

    class Meta:
        ordering = ["-decided_at", "-id"]


class JudgeFirstView(models.Model):
    CONCERN = [
        ("high", "High concern"),
        ("some", "Some concern"),
        ("low", "Low concern"),
        ("none", "No concern"),
    ]
    child_id = models.CharField(max_length=64, db_index=True)
    analyst = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    concern = models.CharField(max_length=10, choices=CONCERN)
    note = models.TextField(blank=True)
    recorded_at = models.DateTimeField(auto_now_add=True)
    publish_id = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-recorded_at", "-id"]


class LinkDecision(models.Model):
    DECISIONS = [("accept", "Same child (accept the link)"), ("reject", "Different children")]
    decision_id = models.CharField(max_length=40, unique=True)
    pair_id = models.CharField(max_length=13, db_index=True)
    decision = models.CharField(max_length=10, choices=DECISIONS)
    reason = models.TextField(blank=True)
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    decided_at = models.DateTimeField(auto_now_add=True)
    match_probability = models.FloatField(null=True)
    #: the decisions file that carried it to the linkage unit (blank until exported)
    exported_file = models.CharField(max_length=200, blank=True)
    exported_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-decided_at", "-id"]


class IdentificationRequest(models.Model):
    child_id = models.CharField(max_length=64, db_index=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    purpose = models.TextField()
    #: the agencies holding the child's records, to whom the request goes
    agencies = models.CharField(max_length=200)
    requested_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-requested_at", "-id"]


class Preference(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    judge_first = models.BooleanField(default=False)


class SavedScenario(models.Model):
    """A planner's saved scenario: its name and levers (`forecast.scenarios.Scenario` fields as
    JSON), private to its owner."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    name = models.CharField(max_length=80)
    params = models.JSONField(default=dict)
    saved_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-saved_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "name"], name="one_scenario_name_per_owner")
        ]
