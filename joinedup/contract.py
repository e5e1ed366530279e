"""The data contract, as the hub's code reads it: the agency-side package's `pseudonymiser.contract`
is the one definition (docs/data-contract.md says the same in words); this module re-exports it so
hub and linkage-unit code keep one import path."""

from __future__ import annotations

from pseudonymiser.contract import *  # noqa: F403
from pseudonymiser.contract import columns_for, file_name, parse_file_name  # noqa: F401
