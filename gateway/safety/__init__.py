"""Content safety both ways: pluggable detectors (offline default, Azure AI Content Safety) and
the policy engine that blocks, redacts and annotates in the Azure OpenAI shapes.

    >>> engine = SafetyEngine(SafetyConfig())                            # doctest: +SKIP
"""

from gateway.safety.detectors import (
    CATEGORIES,
    Analysis,
    Detector,
    OfflineDetector,
    PIISpan,
    register_detector,
)
from gateway.safety.engine import (
    DetectorFailed,
    InputCheck,
    OutputVerdict,
    SafetyEngine,
    StreamFilter,
    merge_results,
    redact,
)

__all__ = [
    "CATEGORIES",
    "Analysis",
    "Detector",
    "DetectorFailed",
    "InputCheck",
    "OfflineDetector",
    "OutputVerdict",
    "PIISpan",
    "SafetyEngine",
    "StreamFilter",
    "merge_results",
    "redact",
    "register_detector",
]
