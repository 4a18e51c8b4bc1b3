"""Azure AI Content Safety as a detector: ``text:analyze`` (harm categories, 8 severity levels,
custom blocklists) and Prompt Shields ``text:shieldPrompt`` (jailbreak / indirect attack).

Uses the official ``azure-ai-contentsafety`` client; its pipeline transport is the test seam.
Calls are blocking, so the engine runs them in a worker thread (``blocking_io``).

    >>> det = AzureContentSafetyDetector("https://cs.example.com", "KEY")  # doctest: +SKIP
    >>> det.analyze("some text", "prompt").severities              # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from azure.ai.contentsafety import ContentSafetyClient
from azure.ai.contentsafety.models import AnalyzeTextOptions, AnalyzeTextOutputType
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import AzureError
from azure.core.rest import HttpRequest

from gateway.config import SafetyConfig
from gateway.errors import DetectorFailed
from gateway.safety.detectors import Analysis, Role
from genaiops.settings import SecretRef

__all__ = ["AzureContentSafetyDetector"]

_CATEGORY = {"Hate": "hate", "Sexual": "sexual", "Violence": "violence", "SelfHarm": "self_harm"}
SHIELD_API_VERSION = "2024-09-01"


class AzureContentSafetyDetector:
    """Harm categories and prompt attacks from an Azure AI Content Safety resource."""

    name = "azure"
    blocking_io = True

    def __init__(
        self,
        endpoint: str,
        key: str,
        *,
        blocklists: list[str] | None = None,
        transport: Any = None,
    ):
        kw: dict[str, Any] = {"retry_total": 1}
        if transport is not None:
            kw["transport"] = transport
        self.client = ContentSafetyClient(endpoint, AzureKeyCredential(key), **kw)
        self.blocklists = list(blocklists or [])

    @classmethod
    def from_config(cls, cfg: SafetyConfig, transport: Any = None) -> AzureContentSafetyDetector:
        assert cfg.azure_endpoint and cfg.azure_key_env  # validated by SafetyConfig
        key = SecretRef(env=cfg.azure_key_env).resolve() or ""
        return cls(cfg.azure_endpoint, key, blocklists=cfg.azure_blocklists, transport=transport)

    def analyze(self, text: str, role: Role) -> Analysis:
        a = Analysis(source="azure")
        try:
            opts = AnalyzeTextOptions(
                text=text[:10_000],
                output_type=AnalyzeTextOutputType.EIGHT_SEVERITY_LEVELS,
                blocklist_names=self.blocklists or None,
            )
            res = self.client.analyze_text(opts)
            for item in res.categories_analysis or []:
                cat = _CATEGORY.get(str(item.category))
                if cat:
                    a.severities[cat] = int(item.severity or 0)
            a.blocklist = sorted(
                {m.blocklist_item_text.lower() for m in (res.blocklists_match or [])}
            )
            if role in ("prompt", "document"):
                a.attack = self._shield(text, role)
        except AzureError as e:
            raise DetectorFailed(f"azure content safety: {type(e).__name__}: {e}") from e
        return a

    def _shield(self, text: str, role: Role) -> bool:
        body = (
            {"userPrompt": text, "documents": []}
            if role == "prompt"
            else {"userPrompt": "", "documents": [text]}
        )
        req = HttpRequest(
            "POST",
            "/text:shieldPrompt",
            params={"api-version": SHIELD_API_VERSION},
            json=body,
        )
        resp = self.client.send_request(req)
        resp.raise_for_status()
        data = resp.json()
        if role == "prompt":
            return bool(data.get("userPromptAnalysis", {}).get("attackDetected"))
        return any(d.get("attackDetected") for d in data.get("documentsAnalysis", []))
