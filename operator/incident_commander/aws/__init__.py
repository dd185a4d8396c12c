"""AWS plumbing: connection specs, credentials, clients, resilience and health probes."""
