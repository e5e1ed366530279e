"""The risk model and care-demand forecast: point-in-time features (`models.features`), training,
calibration, evaluation and the registry (`models.train`), scoring with reasons (`models.score`)
and the care-demand forecast (`models.forecast`).  Each stage is `run(settings, **options)`.

May import `joinedup`, `warehouse` and (lazily, for evaluation on synthetic data only)
`linkage.truth`.
"""
