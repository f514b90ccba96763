"""Every byte at rest: the SQLite event store with its purgatory tables, and the bare repos."""
