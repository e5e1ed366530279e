"""Care-demand forecasting for service planners (issue 13), apart from the risk model.

* `history`: monthly counts of entries to child-protection plans and to care from the hub's
  linked events (complete months only), county-wide and by age band;
* `topdown`: a count model of those monthly histories (negative binomial regression on a local
  trend and the calendar month, statsmodels) forecasting the next 12 months with intervals by
  simulation; it never depends on the risk model;
* `backtest`: rolling-origin backtests per horizon (MAE, MASE, interval coverage) of the
  top-down view against a seasonal-naive baseline.

The bottom-up view (calibrated probabilities of the current population) is `models.forecast`.
"""
