"""Agents: registration, heartbeats and health derived from heartbeat age."""
