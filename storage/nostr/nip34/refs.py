"""git names as NIP-34 events spell them: object ids, the zero id, the ref namespaces a
repository state lists and where a PR's tip lives, and the refs a 30618 state event lists."""

from __future__ import annotations

from storage.nostr.event import Event, is_hex

#: git's id of "no object": the old side of a ref being created, the new side of one deleted.
ZERO_OID = "0" * 40
#: Where a PR's tip lives in a repo: `refs/nostr/<PR event id>` (NIP-34).
PR_REF_PREFIX = "refs/nostr/"
BRANCH_AND_TAG = ("refs/heads/", "refs/tags/")


def is_oid(value: object) -> bool:
    """A git object id as events and the git protocol spell it: 40 (SHA-1) or 64 (SHA-256)
    lowercase hex characters."""
    return is_hex(value, 40) or is_hex(value, 64)


def state_refs(event: Event) -> tuple[dict[str, str], str | None]:
    """Branches/tags and the HEAD branch a 30618 state event lists.

    Peeled entries (`refs/tags/v1^{}`) and values that are not object ids are ignored: they
    are not refs a repo can hold."""
    refs: dict[str, str] = {}
    head: str | None = None
    for tag in event.tags:
        if len(tag) < 2:
            continue
        name, value = tag[0], tag[1]
        if name == "HEAD":
            if value.startswith("ref: refs/heads/"):
                head = value[5:].strip()
        elif name.startswith(BRANCH_AND_TAG) and "^{}" not in name:
            value = value.strip().lower()
            if is_oid(value):
                refs[name] = value
    return refs, head
