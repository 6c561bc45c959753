"""crewboard: a self-hosted server for chatting with preset LLM agents and running
crash-isolated agent jobs from workflow templates."""

__version__ = "0.1.0"
