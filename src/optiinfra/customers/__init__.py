"""Tenants: created and managed by the operator, each with its own API key."""
