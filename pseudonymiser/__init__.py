"""The agency-side pseudonymiser: what each agency installs and runs alone, inside its own walls.

It turns the agency's raw extracts into the contract v2 files (docs/data-contract.md): identifier
encodings for the linkage unit, coarse attributes and month-dated events for the analytics hub.
It owns the contract as code (`contract`), the key file (`keys`), the encodings (`encoding`) and
the file conversion (`pseudonymise`), and imports nothing from the hub's or the linkage unit's
code (an import-linter contract checks it).  Install alone with `pip install ./pseudonymiser`;
run with `joinedup-pseudonymise` (`pseudonymiser.cli`).
"""
