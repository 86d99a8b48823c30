"""OTLP/HTTP ingest: GenAI spans and evaluation events become quality records and scores."""
