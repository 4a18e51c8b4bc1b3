"""One router per concern: chat, embeddings, feedback, models/health/metrics, admin."""

from gateway.routers import admin, chat, embeddings, feedback, meta

__all__ = ["admin", "chat", "embeddings", "feedback", "meta"]
