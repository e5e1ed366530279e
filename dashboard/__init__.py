"""The web dashboard for analysts, planners, engineers and admins (docs/dashboard.md).

A Django app that reads only the published read models (`dashboard.readmodels`), never the
warehouse, and keeps its own state (users, decisions, audit log) in its own database.  Modules:
`settings` (every security setting), `roles` (who opens what, enforced on the server), `audit`
(the append-only log), `middleware`, `models`, `queries` and `engineering` (what pages read),
`charts` (inline SVG), `forms`, `handoff` (link decisions to the linkage unit), `oidc` (single
sign-on), `rights` (subject access), `cli` (serve, users), `views/` (by audience).
"""
