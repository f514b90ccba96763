"""Unit tests of the pure NIP-34 helpers: coordinates, tag readers, the recursive maintainer
set and the "does this URL point at us" checks."""

from __future__ import annotations

import pytest

from storage import nip34
from storage.event import Event, sign_event

SECRETS = {name: f"{i:064x}" for i, name in enumerate("ABCDEFGH", start=1)}


def pubkey(name: str) -> str:
    return sign_event(SECRETS[name], 1, "", [], 0).pubkey


def announcement(name: str, d: str, maint: list[str] | None = None, extra: list[list[str]] | None = None) -> Event:
    tags = [["d", d]]
    if maint is not None:
        tags.append(["maintainers", *maint])
    return sign_event(SECRETS[name], nip34.ANNOUNCEMENT, "", tags + (extra or []), 1_700_000_000)


def lookup(*anns: Event):
    table = {a.pubkey: a for a in anns}
    return table.get


# --- coordinates and keys ------------------------------------------------------------------
def test_repo_coordinate_round_trips_and_keeps_colons_in_d() -> None:
    pk = pubkey("A")
    coord = nip34.repo_coordinate(pk, "my:repo")
    assert coord == f"30617:{pk}:my:repo"
    assert nip34.parse_coordinate(coord) == (30617, pk, "my:repo")


@pytest.mark.parametrize(
    "value",
    ["", "30617", "30617:abc:d", f"x:{'a' * 64}:d", f"30617:{'A' * 64}:d", f"99999999:{'a' * 64}:d",
     f"70000:{'a' * 64}:d", f"30617:{'a' * 64}"],
)
def test_parse_coordinate_rejects_junk(value: str) -> None:
    assert nip34.parse_coordinate(value) is None


def test_npub_conversions_are_inverse_and_tolerate_junk() -> None:
    pk = pubkey("A")
    npub = nip34.hex_to_npub(pk)
    assert npub.startswith("npub1")
    assert nip34.npub_to_hex(npub) == pk
    assert nip34.npub_to_hex("npub1notreally") is None
    assert nip34.npub_to_hex(pk) is None
    assert nip34.pubkey_from_operator_value(pk.upper()) == pk
    assert nip34.pubkey_from_operator_value(f" {npub} ") == pk
    assert nip34.pubkey_from_operator_value("bob") is None


@pytest.mark.parametrize(
    ("identifier", "ok"),
    [("repo", True), ("my.repo-1", True), ("ünï", True), ("", False), (".", False), ("..", False),
     ("a/b", False), ("a\\b", False), ("a\0b", False), ("x" * 251, True), ("x" * 252, False)],
)
def test_identifier_problem(identifier: str, ok: bool) -> None:
    assert (nip34.identifier_problem(identifier) is None) is ok


# --- tag readers -----------------------------------------------------------------------------
def test_clone_relay_and_maintainer_readers_take_all_values_and_drop_junk() -> None:
    b, c = pubkey("B"), pubkey("C")
    ann = announcement(
        "A", "r", [b, "junk", b.upper(), "npub1xyz", c[:-1]],
        [["clone", "https://a/x.git", "https://b/y.git"], ["clone", "https://c/z.git"],
         ["relays", "wss://a", "wss://b"], ["maintainers", c, b]],
    )
    assert nip34.clone_urls(ann) == ["https://a/x.git", "https://b/y.git", "https://c/z.git"]
    assert nip34.relay_urls(ann) == ["wss://a", "wss://b"]
    assert nip34.maintainers(ann) == [b, c]


def test_pr_readers() -> None:
    a = pubkey("A")
    coord = nip34.repo_coordinate(a, "r")
    tip = "ab" * 20
    pr = sign_event(SECRETS["B"], nip34.PR, "", [["a", coord], ["a", f"30618:{a}:r"], ["a", coord],
                                                 ["c", "nothex"], ["c", tip]], 1)
    assert nip34.pr_tip(pr) == tip
    assert nip34.pr_repo_coordinates(pr) == [coord]
    assert nip34.pr_root(pr) is None  # only updates have a root
    root = "cd" * 32
    upd = sign_event(SECRETS["B"], nip34.PR_UPDATE, "", [["E", "short"], ["E", root], ["c", "ef" * 32]], 1)
    assert nip34.pr_root(upd) == root
    assert nip34.pr_tip(upd) == "ef" * 32
    issue = sign_event(SECRETS["B"], nip34.ISSUE, "", [["c", tip]], 1)
    assert nip34.pr_tip(issue) is None


def test_state_identifier() -> None:
    state = sign_event(SECRETS["A"], nip34.STATE, "", [["d", "r"], ["refs/heads/main", "ab" * 20]], 1)
    assert nip34.state_identifier(state) == "r"
    assert nip34.state_identifier(announcement("A", "r")) is None


# --- maintainer set --------------------------------------------------------------------------
def test_maintainer_set_follows_a_chain() -> None:
    a, b, c, d = (pubkey(n) for n in "ABCD")
    anns = lookup(announcement("A", "r", [b]), announcement("B", "r", [c]), announcement("C", "r", [d]))
    assert nip34.maintainer_set(a, "r", anns) == {a, b, c, d}
    assert nip34.maintainer_set(b, "r", anns) == {b, c, d}
    assert nip34.maintainer_set(d, "r", anns) == {d}


def test_maintainer_set_stops_at_members_without_announcement() -> None:
    a, b, c = (pubkey(n) for n in "ABC")
    # B is listed but has no announcement: B's would-be maintainers are not reached.
    anns = lookup(announcement("A", "r", [b]), announcement("C", "r", [a]))
    assert nip34.maintainer_set(a, "r", anns) == {a, b}
    assert nip34.maintainer_set(c, "r", anns) == {c, a, b}


def test_maintainer_set_survives_cycles() -> None:
    a, b, c = (pubkey(n) for n in "ABC")
    anns = lookup(announcement("A", "r", [b]), announcement("B", "r", [c]), announcement("C", "r", [a, c]))
    assert nip34.maintainer_set(a, "r", anns) == {a, b, c}
    assert nip34.maintainer_set(c, "r", anns) == {a, b, c}


def test_maintainer_set_without_any_announcement_is_the_owner() -> None:
    a = pubkey("A")
    assert nip34.maintainer_set(a, "r", lambda _pk: None) == {a}


def test_maintainer_set_ignores_announcements_of_other_identifiers_or_authors() -> None:
    a, b, c = (pubkey(n) for n in "ABC")
    wrong_d = announcement("B", "other", [c])
    wrong_author = announcement("C", "r", [c])
    table = {a: announcement("A", "r", [b, "zz" * 32, "not-a-key"]), b: wrong_d, c: wrong_author}
    assert nip34.maintainer_set(a, "r", table.get) == {a, b}


def test_owners_authorising() -> None:
    a, b, c, e = (pubkey(n) for n in "ABCE")
    ann_a, ann_b, ann_c = announcement("A", "r", [b]), announcement("B", "r", []), announcement("C", "r", [])
    table = lookup(ann_a, ann_b, ann_c)
    assert nip34.owners_authorising(b, [ann_a, ann_b, ann_c], table) == [a, b]
    assert nip34.owners_authorising(e, [ann_a, ann_b, ann_c], table) == []


# --- URL matching ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "domain", "ok"),
    [
        ("https://git.example.org/x", "git.example.org", True),
        ("http://git.example.org/x", "git.example.org", True),
        ("wss://git.example.org", "git.example.org", True),
        ("ws://git.example.org/", "git.example.org", True),
        ("https://GIT.Example.ORG/x", "git.example.org", True),
        ("https://git.example.org:443/x", "git.example.org", True),
        ("https://git.example.org/x", "git.example.org:443", True),
        ("http://git.example.org/x", "git.example.org:443", False),
        ("wss://git.example.org:444", "git.example.org", False),
        ("http://git.example.org:80/x", "git.example.org:80", True),
        ("http://127.0.0.1:8080/x", "127.0.0.1:8080", True),
        ("http://127.0.0.1:8081/x", "127.0.0.1:8080", False),
        ("http://127.0.0.1/x", "127.0.0.1:8080", False),
        ("ws://127.0.0.1:8080", "127.0.0.1:8080", True),
        ("https://other.example.org/x", "git.example.org", False),
        ("https://git.example.org.evil.com/x", "git.example.org", False),
        ("https://git.example.org@evil.com/x", "git.example.org", False),
        ("ftp://git.example.org/x", "git.example.org", False),
        ("git.example.org/x", "git.example.org", False),
        ("https://git.example.org:notaport/x", "git.example.org", False),
        ("http://[::1]:8080/x", "[::1]:8080", True),
    ],
)
def test_service_urls_match(url: str, domain: str, ok: bool) -> None:
    assert nip34.service_urls_match(url, domain) is ok


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("wss://git.example.org", True),
        ("wss://git.example.org/", True),
        ("ws://git.example.org", True),
        ("wss://Git.Example.Org", True),
        ("https://git.example.org", False),
        ("wss://git.example.org/relay", False),
        ("wss://git.example.org/?x=1", False),
        ("wss://git.example.org:8443", False),
    ],
)
def test_is_our_relay_url(url: str, ok: bool) -> None:
    assert nip34.is_our_relay_url(url, "git.example.org") is ok


def _clone_cases() -> list[tuple[str, bool]]:
    npub_a = nip34.hex_to_npub(pubkey("A"))
    npub_b = nip34.hex_to_npub(pubkey("B"))
    return [
        (f"https://git.example.org/{npub_a}/repo.git", True),
        (f"http://git.example.org/{npub_a}/repo.git", True),
        (f"https://git.example.org/{npub_a}/repo.git/", True),
        (f"https://GIT.EXAMPLE.ORG:443/{npub_a}/repo.git", True),
        (f"https://git.example.org/{npub_a.upper()}/repo.git", True),
        (f"https://git.example.org/{npub_b}/repo.git", False),
        (f"https://git.example.org/{pubkey('A')}/repo.git", False),
        (f"https://git.example.org/{npub_a}/other.git", False),
        (f"https://git.example.org/{npub_a}/repo", False),
        (f"https://git.example.org/prs/{npub_a}/repo.git", False),
        (f"https://git.example.org/x/{npub_a}/repo.git", False),
        (f"https://git.example.org:8443/{npub_a}/repo.git", False),
        (f"https://other.org/{npub_a}/repo.git", False),
        (f"wss://git.example.org/{npub_a}/repo.git", False),
        (f"https://git.example.org/{npub_a}/repo.git?x=1", False),
    ]


@pytest.mark.parametrize(("url", "ok"), _clone_cases())
def test_is_our_clone_url(url: str, ok: bool) -> None:
    assert nip34.is_our_clone_url(url, "git.example.org", pubkey("A"), "repo") is ok


def test_clone_url_identifier_is_percent_decoded() -> None:
    npub = nip34.hex_to_npub(pubkey("A"))
    url = f"http://127.0.0.1:8080/{npub}/my%20repo.git"
    assert nip34.is_our_clone_url(url, "127.0.0.1:8080", pubkey("A"), "my repo")
    assert not nip34.is_our_clone_url(url, "127.0.0.1:8080", pubkey("A"), "my%20repo")


def test_announcement_lists_us_reports_each_side() -> None:
    domain = "127.0.0.1:8080"
    npub = nip34.hex_to_npub(pubkey("A"))
    ours_clone = f"http://{domain}/{npub}/r.git"
    both = announcement("A", "r", extra=[["clone", "https://github.com/x/r.git", ours_clone],
                                         ["relays", "wss://relay.damus.io", f"ws://{domain}"]])
    clone_only = announcement("A", "r", extra=[["clone", ours_clone], ["relays", "wss://relay.damus.io"]])
    relay_only = announcement("A", "r", extra=[["relays", f"ws://{domain}/"]])
    assert nip34.announcement_lists_us(both, domain) == (True, True)
    assert nip34.announcement_lists_us(clone_only, domain) == (True, False)
    assert nip34.announcement_lists_us(relay_only, domain) == (False, True)
