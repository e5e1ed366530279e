"""The database refuses to change or delete audit entries (SQLite and PostgreSQL triggers), so
the audit log is append-only even for code that bypasses the model."""

from django.db import migrations

SQLITE = [
    """CREATE TRIGGER dashboard_auditentry_no_update BEFORE UPDATE ON dashboard_auditentry
       BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
    """CREATE TRIGGER dashboard_auditentry_no_delete BEFORE DELETE ON dashboard_auditentry
       BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
]
SQLITE_REVERSE = [
    "DROP TRIGGER IF EXISTS dashboard_auditentry_no_update",
    "DROP TRIGGER IF EXISTS dashboard_auditentry_no_delete",
]
POSTGRES = [
    """CREATE OR REPLACE FUNCTION dashboard_auditentry_append_only() RETURNS trigger AS $$
       BEGIN RAISE EXCEPTION 'the audit log is append-only'; END; $$ LANGUAGE plpgsql""",
    """CREATE TRIGGER dashboard_auditentry_no_change BEFORE UPDATE OR DELETE ON dashboard_auditentry
       FOR EACH ROW EXECUTE FUNCTION dashboard_auditentry_append_only()""",
    """CREATE TRIGGER dashboard_auditentry_no_truncate BEFORE TRUNCATE ON dashboard_auditentry
       FOR EACH STATEMENT EXECUTE FUNCTION dashboard_auditentry_append_only()""",
]
POSTGRES_REVERSE = [
    "DROP TRIGGER IF EXISTS dashboard_auditentry_no_change ON dashboard_auditentry",
    "DROP TRIGGER IF EXISTS dashboard_auditentry_no_truncate ON dashboard_auditentry",
    "DROP FUNCTION IF EXISTS dashboard_auditentry_append_only()",
]


def forwards(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    for sql in {"sqlite": SQLITE, "postgresql": POSTGRES}.get(vendor, []):
        schema_editor.execute(sql)


def backwards(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    for sql in {"sqlite": SQLITE_REVERSE, "postgresql": POSTGRES_REVERSE}.get(vendor, []):
        schema_editor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [("dashboard", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards)]
