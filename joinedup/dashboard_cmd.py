"""`joinedup dashboard serve | adduser | code` and the end of `joinedup demo`.

Owns the command-line parsers and handlers; the work is in `dashboard.cli` (imported inside the
handlers: Django starts only when a dashboard command runs).
"""

from __future__ import annotations

import argparse
import getpass

from joinedup.config import Settings


def register(sub) -> None:
    d = sub.add_parser("dashboard", help="the web dashboard: serve it, add users")
    dsub = d.add_subparsers(dest="dashboard_command", required=True)
    s = dsub.add_parser("serve", help="serve the dashboard with gunicorn until Ctrl-C")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    s.add_argument("--threads", type=int, default=8, help="threads per worker")
    s.set_defaults(handler=_serve)
    s = dsub.add_parser("adduser", help="add a user (or reset one's password) with one role")
    s.add_argument("--username", required=True)
    s.add_argument("--role", required=True, help="analyst, planner, engineer or admin")
    s.add_argument("--email", default="")
    s.add_argument(
        "--password-prompt",
        action="store_true",
        help="type the password (default: generate one and show it once)",
    )
    s.set_defaults(handler=_adduser)
    s = dsub.add_parser("code", help="the current sign-in code of a demo account (demo only)")
    s.add_argument("--username", required=True)
    s.set_defaults(handler=_code)
    s = dsub.add_parser(
        "access", help="subject access: what the app's database holds about one child id"
    )
    s.add_argument("--child-id", required=True, help="the child id (from `joinedup rights access`)")
    s.add_argument("--by", required=True, help="who makes the request")
    s.add_argument("--request-id", help="the hub's request id, to file both answers together")
    s.set_defaults(handler=_access)
    d.set_defaults(handler=None)


def _serve(args: argparse.Namespace, settings: Settings) -> dict:
    from dashboard import cli

    cli.setup_django(settings.home)
    cli.serve(args.host, args.port, args.workers, args.threads)
    return {"served": f"http://{args.host}:{args.port}/"}


def _adduser(args: argparse.Namespace, settings: Settings) -> dict:
    from dashboard import cli

    password = getpass.getpass("Password: ") if args.password_prompt else None
    cli.setup_django(settings.home)
    return cli.adduser(args.username, args.role, password=password, email=args.email)


def _code(args: argparse.Namespace, settings: Settings) -> dict:
    from dashboard import cli

    cli.setup_django(settings.home)
    return {"username": args.username, "code": cli.demo_code(args.username)}


def _access(args: argparse.Namespace, settings: Settings) -> dict:
    from dashboard import cli

    cli.setup_django(settings.home)
    from dashboard import rights

    return rights.write_report(args.child_id, args.by, args.request_id)


def dispatch(args: argparse.Namespace, settings: Settings) -> dict:
    return args.handler(args, settings)


def serve_demo(settings: Settings, port: int) -> None:
    """The end of `joinedup demo`: demo accounts (shown once), then serve on 127.0.0.1."""
    from dashboard import cli

    cli.setup_django(settings.home)
    accounts = cli.demo_accounts()
    print("\nDashboard accounts (passwords and authenticator keys are shown once, stored hashed):")
    for a in accounts:
        print(
            f"  {a['role']:9s} user {a['username']:15s} password {a['password']}  "
            f"authenticator key {a['totp_key']}"
        )
    print(
        "  The sign-in asks for a six-digit code: add the key to any authenticator app, or run\n"
        f"  `.venv/bin/joinedup --home {settings.home} dashboard code --username analyst-demo`."
    )
    cli.serve("127.0.0.1", port)
