"""The process around the relay: the command line, logging, systemd readiness, SIGHUP
reload, and the operator commands (backup, verify)."""
