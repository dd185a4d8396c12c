"""API keys and JWT signing keys that the operator issues for IncidentPolicies."""
