"""The operator's authenticated HTTP API: API keys to JWTs, routing decisions, usage reports."""
