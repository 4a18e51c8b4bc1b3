"""Mean of each metric over lines, logged as promptflow metrics (NaNs counted as ``*_nan``)."""

import math
import sys

if "promptflow" in sys.modules:  # running under pf: register with promptflow itself
    from promptflow.core import log_metric, tool
else:  # the genaiops runner never imports promptflow (slow, phones home, retires 2027-04)
    from evaluation.runtime.flowtools import tool

    def log_metric(key, value):  # noqa: D103
        return None


from evaluation.stats import is_nan


@tool
def aggregate(scores: list) -> dict:
    keys = sorted({k for s in scores for k, v in s.items() if isinstance(v, int | float)})
    means: dict = {}
    for k in keys:
        vals = [s.get(k) for s in scores]
        valid = [float(v) for v in vals if not is_nan(v)]
        means[k] = sum(valid) / len(valid) if valid else math.nan
        means[f"{k}_nan"] = float(len(vals) - len(valid))
    for key, value in means.items():
        if value == value:  # promptflow rejects NaN metrics; NaN counts are logged as *_nan
            log_metric(key=key, value=value)
    return means
