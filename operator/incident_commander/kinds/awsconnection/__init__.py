"""AwsConnection: how to reach AWS. ``controller`` probes and reports; ``handlers`` subscribes it."""
