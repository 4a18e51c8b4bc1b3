"""One router per concern: chat, embeddings, models/health/metrics, admin."""

from gateway.routers import admin, chat, embeddings, meta

__all__ = ["admin", "chat", "embeddings", "meta"]
