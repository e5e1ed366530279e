"""The web dashboard for analysts, planners and engineers (a later issue).

It will read only the published snapshot (`warehouse.publish`), never the working warehouse,
and keep its own state (users, reviews, audit log) in its own database.
"""
