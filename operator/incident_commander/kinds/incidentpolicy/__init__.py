"""IncidentPolicy: severities, routing, storage and API clients. ``spec`` is its one typed spec,
``controller`` reconciles it, ``handlers`` subscribes it."""
