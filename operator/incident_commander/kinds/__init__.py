"""kopf handlers, one module per custom resource kind."""
