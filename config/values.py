"""Parsers for the kinds of values settings hold (sizes, addresses, networks, public keys),
each raising ValueError with a message an operator can act on.

They live apart from the settings model so that every check happens once, at load time:
`check-config` and the start then agree, and a bad value is one line naming the setting
(exit 2) instead of a traceback from whichever component first touches it."""

from __future__ import annotations

import ipaddress
import re
from decimal import Decimal, InvalidOperation
from urllib.parse import urlsplit

#: KiB/MiB/GiB/TiB and the single letters K/M/G/T are powers of 1024 (as the README and
#: nginx/docker write them); kB/MB/GB/TB are powers of 1000. Compared case-insensitively.
SIZE_UNITS: dict[str, int] = {
    "": 1, "b": 1,
    "k": 1024, "kib": 1024, "kb": 1000,
    "m": 1024**2, "mib": 1024**2, "mb": 1000**2,
    "g": 1024**3, "gib": 1024**3, "gb": 1000**3,
    "t": 1024**4, "tib": 1024**4, "tb": 1000**4,
}
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([A-Za-z]*)$")
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOSTNAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*\.?$")
_DOTTED_DIGITS = re.compile(r"^[0-9.]+$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def parse_size(value: object) -> object:
    """A byte size: a plain integer (`1073741824`) or a number with a unit (`64MiB`,
    `1 GiB`, `1.5GB`). Anything that is not a string or number is left to pydantic."""
    if isinstance(value, bool):
        raise ValueError("must be a size in bytes, not a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"{value} is not a whole number of bytes")
        return int(value)
    if not isinstance(value, str):
        return value
    text = value.strip().replace("_", "")
    match = _SIZE.match(text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in SIZE_UNITS:
        raise ValueError(f"{value!r} is not a size: write bytes (65536) or a number with a unit "
                         f"(64KiB, 100MiB, 1GiB; kB/MB/GB are powers of 1000)")
    try:
        number = Decimal(match.group(1)) * SIZE_UNITS[unit]
    except InvalidOperation:  # pragma: no cover - the pattern only lets digits through
        raise ValueError(f"{value!r} is not a size") from None
    if number != number.to_integral_value():
        raise ValueError(f"{value!r} is not a whole number of bytes")
    return int(number)


def format_size(value: int) -> str:
    """The shortest exact IEC spelling of a size (`1GiB`, `65536` stays `64KiB`)."""
    for unit in ("TiB", "GiB", "MiB", "KiB"):
        factor = SIZE_UNITS[unit.lower()]
        if value and value % factor == 0:
            return f"{value // factor}{unit}"
    return str(value)


def check_network(entry: str) -> str:
    """An IP address or network (`127.0.0.1`, `10.0.0.0/8`, `fd00::/8`); host bits are
    allowed (`10.1.2.3/8` means 10.0.0.0/8)."""
    try:
        ipaddress.ip_network(entry, strict=False)
    except ValueError:
        raise ValueError(f"{entry!r} is not an IP address or network (e.g. 127.0.0.1, "
                         f"172.16.0.0/12, ::1)") from None
    return entry


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def check_host(host: str) -> str:
    """A hostname or an IP address (IPv6 in brackets or bare). Dotted digits must be a
    valid IPv4 address: `10.0.0.300` is a typo, not a hostname."""
    inner = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if _is_ip(inner):
        return host
    if host.startswith("[") or ":" in host or _DOTTED_DIGITS.match(host) or not _HOSTNAME.match(host.lower()):
        raise ValueError(f"{host!r} is not a hostname or IP address")
    return host


def check_bind(value: str) -> str:
    """`host:port` to listen on (`0.0.0.0:8080`, `[::]:8080`, `localhost:8080`)."""
    host, sep, port = value.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} must be host:port, e.g. 127.0.0.1:8080")
    check_host(host)
    return value.strip()


def domain_host_port(domain: str) -> tuple[str, int | None]:
    """(host, port or None) of a `host[:port]` domain; ValueError if it is not one."""
    try:
        parts = urlsplit("//" + domain)
        port = parts.port
    except ValueError:
        raise ValueError(f"{domain!r} has a bad port (host[:port], port 1-65535)") from None
    host = parts.netloc.rpartition("@")[2]
    if port is not None:
        host = host[: host.rindex(":")]
    if not host or parts.username is not None or port == 0:
        raise ValueError(f"{domain!r} must be a bare host[:port], e.g. git.example.org")
    return host, port


def check_domain(value: str) -> str:
    """The public `host[:port]` as clone and relay URLs name it: no scheme, no path."""
    value = value.strip().lower()
    if not value or any(ch in value for ch in "/ ?#\\"):
        raise ValueError(f"{value!r} must be a bare host[:port] without scheme or path, e.g. git.example.org")
    host, _ = domain_host_port(value)
    check_host(host)
    return value


def check_pubkey(value: str) -> str:
    """A public key as operators write it: `npub1...` or 64 hex characters, and a real
    key (a point on the curve), not merely the right shape."""
    text = value.strip()
    shaped = text.startswith("npub1") or bool(_HEX64.match(text.lower()))
    if shaped:
        from coincurve import PublicKeyXOnly
        from nostr_sdk import PublicKey

        try:  # nostr-sdk decodes bech32 but takes any 32 bytes; coincurve checks the point
            PublicKeyXOnly(bytes.fromhex(PublicKey.parse(text).to_hex()))
            return text
        except Exception:  # both raise their own error types
            pass
    raise ValueError(f"{value!r} is not a public key (npub1... or 64 hex characters naming a valid key)")


def _identifier_problem(identifier: str) -> str | None:
    """Mirrors what a repo directory name may be (storage.nostr.nip34.identifier_problem, which
    config/ cannot import: imports point from storage to config)."""
    if identifier in (".", ".."):
        return "cannot be '.' or '..'"
    if any(ch in identifier for ch in ("/", "\\", "\0")) or any(ord(ch) < 32 for ch in identifier):
        return "holds a separator or control character"
    return None


def check_archive_entry(entry: str) -> str:
    """GRASP-05 whitelist entry: `npub1...` (all of a user's repos), `npub1.../identifier`
    or a bare `identifier`. An entry that starts like an npub must be one."""
    text = entry.strip()
    head, sep, tail = text.partition("/")
    if sep or head.startswith("npub1"):
        try:
            check_pubkey(head)
        except ValueError:
            raise ValueError(f"{entry!r}: {head!r} is not an npub (entries are npub, npub/identifier "
                             f"or identifier)") from None
    if sep:
        problem = "is empty" if not tail else _identifier_problem(tail)
        if problem is not None:
            raise ValueError(f"{entry!r}: the identifier {problem}")
    elif not head.startswith("npub1"):
        problem = _identifier_problem(text)
        if problem is not None:
            raise ValueError(f"{entry!r}: the identifier {problem}")
    return text
