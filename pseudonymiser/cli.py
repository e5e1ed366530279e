"""`joinedup-pseudonymise`: the agency's command.  `keygen` makes a scheme key file (once, shared
between the agencies of a scheme out of band); `run` turns the raw extracts in a folder into the
files for the linkage unit and for the analytics hub.  Prints counts only (`--json` for one JSON
object); exits 2 with a one-line reason on bad input, never quoting a value or the key."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pseudonymiser import keys
from pseudonymiser.errors import PseudonymiserError
from pseudonymiser.pseudonymise import pseudonymise_files


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="joinedup-pseudonymise", description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="print figures as one JSON object")
    sub = p.add_subparsers(dest="command", required=True)
    k = sub.add_parser("keygen", help="make a new scheme key file (refuses to overwrite one)")
    k.add_argument("--key-file", type=Path, required=True)
    r = sub.add_parser("run", help="raw extracts -> files for the linkage unit and the hub")
    r.add_argument("--key-file", type=Path, required=True, help="the scheme key file")
    r.add_argument("--source", type=Path, required=True, help="folder of raw extracts")
    r.add_argument("--to-hub", type=Path, required=True, help="folder for the hub's files")
    r.add_argument(
        "--to-linkage-unit", type=Path, required=True, help="folder for the linkage unit's files"
    )
    r.add_argument("--areas", type=Path, help="public postcode-sector -> ward lookup CSV")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "keygen":
            figures = {"key_file": str(keys.generate_key(args.key_file)), "created": True}
        else:
            figures = pseudonymise_files(
                args.key_file, args.source, args.to_hub, args.to_linkage_unit, args.areas
            )
    except (PseudonymiserError, OSError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        print(f"joinedup-pseudonymise {args.command}: error: {reason}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            if not isinstance(value, dict):
                print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
