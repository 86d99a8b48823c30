"""OptiInfra's own Prometheus metrics: counters kept in PostgreSQL, gauges read at scrape time (docs/alerts.md)."""
