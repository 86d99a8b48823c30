"""OptiInfra: the system of record and control loop for LLM infrastructure optimization."""

__version__ = "0.1.0"
