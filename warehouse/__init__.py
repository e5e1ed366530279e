"""The DuckDB warehouse: schema migrations, ingest of landing files into the raw layer,
the audit trail and the atomic published snapshot.

May import `joinedup.config` and `joinedup.contract` only.
"""
