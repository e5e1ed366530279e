"""Batch validation with Great Expectations: the committed suites (`suites/*.json`, one per agency
extract kind), the derived check columns they read (`checks`), and the validate stage
(`validate.run`) that sends every raw load to staging or quarantine.  See docs/validation.md.

Imports only `joinedup` and `warehouse.db`; Great Expectations is imported inside functions.
"""
