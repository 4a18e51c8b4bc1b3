"""Mean of each metric over lines, logged as promptflow metrics (evaluation.runtime.flowtools)."""

import sys

if "promptflow" in sys.modules:  # running under pf: register with promptflow itself
    from promptflow.core import log_metric, tool
else:  # the genaiops runner never imports promptflow (slow, phones home, retires 2027-04)
    from evaluation.runtime.flowtools import tool

    def log_metric(key, value):  # noqa: D103
        return None


from evaluation.runtime.flowtools import aggregate_scores


@tool
def aggregate(scores: list) -> dict:
    means = aggregate_scores(scores)
    for key, value in means.items():
        if value == value:  # promptflow rejects NaN metrics; NaN counts are logged as *_nan
            log_metric(key=key, value=value)
    return means
