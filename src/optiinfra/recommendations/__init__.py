"""Recommendations, the customer's approvals, and the optimizations that execute them."""
