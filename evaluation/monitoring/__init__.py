"""Learning from production, offline half: online evaluation of captured traffic, drift, the
monitoring report, thresholds and export of captured records as an evaluation set.

``genaiops monitor evaluate|drift|check|report|export`` call these; the gateway's state is read
and written through one seam, :mod:`evaluation.monitoring.sources`.
"""

from evaluation.monitoring.config import Breach, MonitoringConfig, load_monitoring_config
from evaluation.monitoring.errors import MonitoringError, ReferenceError_, WhereError

__all__ = [
    "Breach",
    "MonitoringConfig",
    "MonitoringError",
    "ReferenceError_",
    "WhereError",
    "load_monitoring_config",
]
