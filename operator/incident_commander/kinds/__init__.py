"""One package per custom resource kind: its controller, its typed spec, its watch subscriptions."""
