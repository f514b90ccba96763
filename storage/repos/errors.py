"""The two ways a repository operation fails: the name cannot be a repo here (the client
sent it, so the message is for them), or git could not do what was asked."""


class BadRepoPath(ValueError):
    """An npub or identifier that cannot name a repo here; the message is client-facing."""


class RepoError(RuntimeError):
    """A git operation on a repo failed (missing objects, failed fetch)."""
