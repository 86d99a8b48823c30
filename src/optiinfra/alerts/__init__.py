"""Alerts: routes per customer, an outbox written with the events it reports, delivery by workers (docs/alerts.md)."""
