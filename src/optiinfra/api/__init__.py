"""The HTTP API: a FastAPI app under /api/v1, plus health, readiness and metrics."""
