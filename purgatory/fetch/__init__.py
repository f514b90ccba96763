"""Outbound git fetches: which addresses may be dialled (`outbound`), the pinned connection
that dials only those (`pinning`), and the pygit2 fetch of wanted objects (`objects`)."""
