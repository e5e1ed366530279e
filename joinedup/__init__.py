"""Joined-Up: configuration, the data contract, the stage registry and the CLI.

This package owns what every other package shares (paths, contract constants, stage wiring).
It may import any project package; the stage packages import only `joinedup.config`,
`joinedup.contract` and `joinedup.audit`-free helpers from here, never the CLI.
"""

__version__ = "0.1.0"
