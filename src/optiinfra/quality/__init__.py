"""The quality domain: LLM quality metrics, baselines and regressions."""
