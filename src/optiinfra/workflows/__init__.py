"""Workflows: a small runner recorded in the workflow tables, and the cost and resource agents' workflows."""
