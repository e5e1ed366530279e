"""Evaluation only: attacks on the encoded people files (bench/bench_privacy_attack.py, tests).

Production code (joinedup, linkage, warehouse, models, dags) must never import this package.
Owns: `county` (a synthetic county's people records encoded with contract v1 and v2, plus the
plaintext names the attacks are scored against) and `attacks` (the attacks and their scoring).
"""
