"""Pseudonymisation (agency side) and record linkage (hub side).

Modules: `keys` (the HMAC key file), `encoding` (normalisation, tokens, Soundex, Bloom filters),
`pseudonymise` (raw extract -> contract file), `model` (the Splink model), `clustering`
(guarded clustering and stable child ids), `link` (the link stage), `truth` and `evaluate`
(synthetic-truth quality figures), `report` (the HTML quality report).
"""
