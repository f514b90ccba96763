"""The identifier sync service of the seed's design: the queue, the per-domain throttle, the
pure URL selection and step, the loops, and the `SyncContext` interface with its real
implementation."""
