"""The SQLite event store: schema, the single writer, the reader lanes, the purgatory tables
and the synchronous view the acceptance policy reads."""
