"""The AWS resources behind an IncidentPolicy: create, adopt, report drift, delete."""
