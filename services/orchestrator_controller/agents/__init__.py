"""Registered agents: other teams' services the engine calls with the agent protocol, added at
run time through `POST /agents` or an Agent resource, next to the built-in agents."""
