"""What the operator keeps of a watched object between two of its watch events.

kopf hands each handler the whole object as the apiserver sent it. Kept as it is, every object
would carry ``metadata.managedFields`` (for each writer, a tree with the shape of every field it
set, rewritten on every status patch) and, for objects created with ``kubectl apply``, the
last-applied annotation (the whole manifest again). Neither is ever read here. The registries and
the relist trackers keep an object for its whole life, so at a thousand objects of each kind these
copies were a large part of the operator's memory; see docs/performance.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
IDENTITY_METADATA = ("namespace", "name", "uid", "labels", "resourceVersion")
IDENTITY_FIELDS = ("apiVersion", "kind", "type")
"""``type`` is a Secret's: it tells the keyring which key document a deleted Secret held."""


def kept_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """The object without its write bookkeeping and without status. Shares spec and the other
    fields with ``body`` (watch events are never modified in place), so the copy costs two small
    dicts. Status is left out because its keepers hold their own copy of what they last wrote:
    the status in a watch event is mostly the echo of the operator's own patch."""
    kept = {field: value for field, value in body.items() if field not in ("metadata", "status")}
    metadata = body.get("metadata") or {}
    kept_metadata = {field: value for field, value in metadata.items() if field != "managedFields"}
    annotations = metadata.get("annotations")
    if annotations and LAST_APPLIED in annotations:
        kept_metadata["annotations"] = {k: v for k, v in annotations.items() if k != LAST_APPLIED}
    kept["metadata"] = kept_metadata
    return kept


def kept_identity(body: Mapping[str, Any]) -> dict[str, Any]:
    """Just enough to tell the handlers later that the object is gone: who it was, not what it
    held (so a Secret's data never stays in memory for this)."""
    metadata = body.get("metadata") or {}
    kept = {field: body[field] for field in IDENTITY_FIELDS if field in body}
    kept["metadata"] = {field: metadata[field] for field in IDENTITY_METADATA if field in metadata}
    return kept
