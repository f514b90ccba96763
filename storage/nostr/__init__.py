"""The Nostr model: the event value and its checks, NIP-01 filters, NIP-34 facts. Pure values
and functions, no bytes at rest; it sits in the bottom package so that every layer can import
it and nothing it imports is above it."""
