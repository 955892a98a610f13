"""How an outside identifier (a LiteLLM user, an end user, a conversation) becomes a project UUID.

The rule, documented in docs/CONTRACT.md ("LiteLLM mapping"): a string that is a UUID is
that UUID; any other string is the UUIDv5 of its exact text under `EXTERNAL_ID_NAMESPACE`.
`worker users create --external-id X` and `POST /users` with `external_id` use this same
function, so the user the gateway names and the user the worker knows are one row.
"""

from __future__ import annotations

import uuid

EXTERNAL_ID_NAMESPACE = uuid.UUID("d8deec7b-1a2d-58a1-8dc0-1fdee312341c")
"""Fixed for ever: uuid5(NAMESPACE_URL, "urn:llm-persistence-worker:external-id")."""


def project_uuid(external_id: str) -> uuid.UUID:
    """The project UUID of an outside identifier: a UUID as is, any other string through UUIDv5."""
    if not isinstance(external_id, str) or not external_id:
        raise ValueError("an external id is a non-empty string")
    try:
        return uuid.UUID(external_id)
    except ValueError:
        return uuid.uuid5(EXTERNAL_ID_NAMESPACE, external_id)


def derived_uuid(*parts: str) -> uuid.UUID:
    """A UUID derived deterministically from `parts` (event and message ids of one call)."""
    # NUL cannot occur in the parts we derive from, so the joined text is unambiguous.
    return uuid.uuid5(EXTERNAL_ID_NAMESPACE, "\x00".join(parts))
