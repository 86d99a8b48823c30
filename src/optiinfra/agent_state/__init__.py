"""Agent state (FOUNDATION-0.2b) on the API: configs, live state and resource locks, capabilities, metrics."""
