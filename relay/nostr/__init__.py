"""Where an EVENT goes: the NIP-01 websocket (`websocket` moves frames, `protocol` decides
without I/O), the GRASP acceptance rules (`policy`), and `ingest`, which stores, holds in
purgatory or refuses. Live fan-out and NIP-11 live here too."""
