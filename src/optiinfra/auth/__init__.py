"""API keys and the callers they identify: operator, customer, agent."""
