"""The genaiops gateway: an OpenAI-compatible endpoint with token quotas, a usage ledger,
content safety both ways and gradual rollout.  Reached over HTTP, never imported by components.

    >>> from gateway import create_app, load_config
    >>> app = create_app(load_config(None))                             # doctest: +SKIP
"""

from gateway.app import build_gateway, create_app
from gateway.config import GatewayConfig, default_config, load_config

__all__ = ["GatewayConfig", "build_gateway", "create_app", "default_config", "load_config"]
