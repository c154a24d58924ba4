"""The agent protocol conformance kit: `python -m agents.conformance URL [--token TOKEN]`.

It checks that a service speaks the protocol of docs/agent-protocol.md as the built-in agents
do, over HTTP only, so a team can run it against an agent written in any language.
"""
