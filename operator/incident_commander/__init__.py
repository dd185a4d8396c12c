"""incident-commander: a Kubernetes operator for AWS plumbing, spending brakes and credentials."""

from importlib import metadata

try:
    __version__ = metadata.version("incident-commander")
except metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

API_GROUP = "incidentcommander.io"
API_VERSION = "v1alpha1"
