"""Events waiting for their git data, and the service that fetches that data.

The lifecycle of what waits here (held events; PR refs pushed before their event) is one
table in `purgatory/lifecycle.py`: read it first. The parts, one job each, joined by
relay/compose.py: `holding` (intake and expiry), `release` (the pure plan) and `apply`
(carrying it out), `adopt` (a repo follows its maintainers' served state), `placeholders`
(PR refs), `locate` (where objects and announcements are), `quarantine` (where fetched
objects wait); `ports` names the store reads and metric calls they use. `sync/` fetches
the missing data, `fetch/` moves its bytes, `integrity/` checks served repos at startup."""
