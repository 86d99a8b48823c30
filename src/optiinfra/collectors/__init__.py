"""Collectors: metrics pulled from the customer's own monitoring (Prometheus) into OptiInfra."""
