"""The network edge: one ASGI app serving the Nostr relay, NIP-11, git smart HTTP and pages."""

__version__ = "0.1.0"
