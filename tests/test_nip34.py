"""Unit tests of the pure NIP-34 helpers: coordinates, tag readers, the recursive maintainer
set and the "does this URL point at us" checks."""

from __future__ import annotations

import pytest

from storage.nostr import nip34
from storage.nostr.event import Event, sign_event

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


# --- maintainer set (the ngit v3 model) ----------------------------------------------------
KEY_SECRETS = {name: f"{0x100 + i:064x}" for i, name in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZ")}
KEY = {name: sign_event(secret, 1, "", [], 0).pubkey for name, secret in KEY_SECRETS.items()}
NOW = 1_800_000_000
T1, T2, T3 = NOW - 3000, NOW - 2000, NOW - 1000
LATER = NOW + 1000


def M(who: str, *times: object) -> list[str]:
    return ["M", KEY.get(who, who), *map(str, times)]


def m(who: str, *times: object) -> list[str]:
    return ["m", KEY.get(who, who), *map(str, times)]


def o(who: str, *times: object) -> list[str]:
    return ["o", KEY.get(who, who), *map(str, times)]


def legacy(*who: str) -> list[str]:
    return ["maintainers", *(KEY.get(w, w) for w in who)]


def repo_of(who: str, *tags: list[str], d: str = "r") -> Event:
    return sign_event(KEY_SECRETS[who], nip34.ANNOUNCEMENT, "", [["d", d], *tags], NOW - 5000)


def walk(owner: str, *anns: Event, limits: nip34.WalkLimits = nip34.WalkLimits(), now: int = NOW) -> nip34.Maintainers:
    table = {a.pubkey: a for a in anns}
    return nip34.walk_maintainers(KEY[owner], "r", table.get, now=now, limits=limits)


def names(keys: frozenset[str]) -> str:
    """Keys as the letters of the table, sorted: "AB"."""
    back = {pk: name for name, pk in KEY.items()}
    return "".join(sorted(back[k] for k in keys))


# (case, announcements by letter -> tags, confirmed, invited, stepped down, moderators); owner A
MAINTAINER_CASES = [
    ("legacy, listed key has no announcement", {"A": [legacy("B")]}, "A", "B", "", ""),
    ("legacy, listed key's announcement does not name back", {"A": [legacy("B")], "B": []}, "A", "B", "", ""),
    ("legacy, reciprocal", {"A": [legacy("B")], "B": [legacy("A")]}, "AB", "", "", ""),
    ("legacy, owner lists self beside others", {"A": [legacy("A", "B")], "B": [legacy("B", "A")]}, "AB", "", "", ""),
    ("takeover: listed key's fork does not list the owner",
     {"A": [legacy("B")], "B": [legacy("C")], "C": [legacy("B")]}, "A", "B", "", ""),
    ("m without times", {"A": [m("B")], "B": [m("A")]}, "AB", "", "", ""),
    ("m open interval", {"A": [m("B", T1)], "B": [m("A", T1)]}, "AB", "", "", ""),
    ("m closed interval", {"A": [m("B", T1, T2)], "B": [m("A")]}, "A", "", "", ""),
    ("m re-opened", {"A": [m("B", T1, T2, T3)], "B": [m("A")]}, "AB", "", "", ""),
    ("m re-opened in a second entry, as ngit writes", {"A": [m("B", T1, T2), m("B", T3)], "B": [m("A")]},
     "AB", "", "", ""),
    ("m open interval starting later", {"A": [m("B", LATER)], "B": [m("A")]}, "A", "", "", ""),
    ("m closed interval ending later", {"A": [m("B", T1, LATER)], "B": [m("A")]}, "A", "", "", ""),
    ("M lead", {"A": [M("A"), M("B")], "B": [M("B"), m("A")]}, "AB", "", "", ""),
    ("o is a moderator", {"A": [m("B"), o("C")], "B": [m("A")], "C": [m("A")]}, "AB", "", "", "C"),
    ("o never makes a maintainer", {"A": [o("B")], "B": [m("A")]}, "A", "", "", "B"),
    ("closed o is nothing", {"A": [o("B", T1, T2)]}, "A", "", "", ""),
    ("naming back as o is not naming back", {"A": [m("B")], "B": [o("A")]}, "A", "B", "", ""),
    ("naming back with an inactive entry is not naming back", {"A": [m("B")], "B": [m("A", T1, T2)]},
     "A", "B", "", ""),
    ("invalid boundaries grant nothing",
     {"A": [m("B", "yesterday"), m("C", T2, T1), m("D", "-5"), m("E", "1.5"), m("F", T1, ""), m("G", " 17")],
      **{k: [m("A")] for k in "BCDEFG"}}, "A", "", "", ""),
    ("invalid pubkey grants nothing", {"A": [m("zz" * 32), m("B"[0] * 3)]}, "A", "", "", ""),
    ("one invalid entry does not void another", {"A": [m("B", "x"), m("B", T1)], "B": [m("A")]}, "AB", "", "", ""),
    ("defer last in an end position closes the entry", {"A": [m("B", T1, "defer")], "B": [m("A")]}, "A", "", "", ""),
    ("defer first is invalid", {"A": [m("B", "defer")], "B": [m("A")]}, "A", "", "", ""),
    ("defer in a start position is invalid", {"A": [m("B", T1, T2, "defer")], "B": [m("A")]}, "A", "", "", ""),
    ("defer not last is invalid", {"A": [m("B", T1, "defer", T3)], "B": [m("A")]}, "A", "", "", ""),
    ("role tags beside maintainers: the maintainers tag is ignored",
     {"A": [legacy("B"), m("C")], "B": [legacy("A")], "C": [legacy("A")]}, "AC", "", "", ""),
    ("an invalid role tag still sets the maintainers tag aside", {"A": [legacy("B"), m("B", "x")], "B": [legacy("A")]},
     "A", "", "", ""),
    ("names back through the role tags, not a maintainers tag beside them",
     {"A": [m("B")], "B": [legacy("A"), m("C")]}, "A", "B", "", ""),
    ("stepping down: own inactive entry, appoints nobody",
     {"A": [m("B")], "B": [m("B", T1, T2), m("A"), m("C")], "C": [m("A")]}, "A", "", "B", ""),
    ("stepping down: only o for oneself", {"A": [m("B")], "B": [o("B"), m("A")]}, "A", "", "B", ""),
    ("stepping down: invalid own entry", {"A": [m("B")], "B": [m("B", "soon"), m("A")]}, "A", "", "B", ""),
    ("the owner stepping down stays and still appoints",
     {"A": [M("A", T1, T2), M("B")], "B": [M("B"), m("A")]}, "AB", "", "", ""),
    ("not naming oneself is not stepping down", {"A": [m("B")], "B": [m("A"), m("C")], "C": [m("B")]},
     "ABC", "", "", ""),
    ("cycle", {"A": [legacy("B")], "B": [legacy("A", "C")], "C": [legacy("B", "A")]}, "ABC", "", "", ""),
    ("two invited keys naming only each other stay invited",
     {"A": [m("D"), m("E")], "D": [m("E")], "E": [m("D")]}, "A", "DE", "", ""),
    ("naming back a key confirmed later in the same round", {"A": [m("B"), m("C")], "B": [m("C")], "C": [m("A")]},
     "ABC", "", "", ""),
    ("3-deep chain", {"A": [m("B")], "B": [m("A"), m("C")], "C": [m("B"), m("D")], "D": [m("C")]},
     "ABCD", "", "", ""),
    ("a chain breaks at a key that does not name back",
     {"A": [m("B")], "B": [m("A"), m("C")], "C": [m("D")], "D": [m("C")]}, "AB", "C", "", ""),
    ("no owner announcement", {"B": [m("A")]}, "A", "", "", ""),
]


@pytest.mark.parametrize(("case", "tags", "confirmed", "invited", "left", "moderators"), MAINTAINER_CASES,
                         ids=[c[0] for c in MAINTAINER_CASES])
def test_maintainer_walk(case: str, tags: dict[str, list[list[str]]], confirmed: str, invited: str, left: str,
                         moderators: str) -> None:
    found = walk("A", *(repo_of(who, *t) for who, t in tags.items()))
    got = (names(found.confirmed), names(found.invited), names(found.stepped_down), names(found.moderators))
    assert got == (confirmed, invited, left, moderators), case
    assert found.owner == KEY["A"] and not found.truncated
    assert nip34.maintainer_set(KEY["A"], "r", {a.pubkey: a for a in (repo_of(w, *t) for w, t in tags.items())}.get,
                                now=NOW) == found.confirmed


def test_activity_is_judged_at_now() -> None:
    anns = (repo_of("A", m("B", T2)), repo_of("B", m("A")))
    assert names(walk("A", *anns, now=T2 - 1).confirmed) == "A"  # not started yet
    assert names(walk("A", *anns, now=T2).confirmed) == "AB"
    closed = (repo_of("A", m("B", T2, T3)), repo_of("B", m("A")))
    assert names(walk("A", *closed, now=T2 + 1).confirmed) == "A"  # an end, even a later one, closes it
    later = (repo_of("A", m("B", LATER)), repo_of("B", m("A")))
    assert names(walk("A", *later).confirmed) == "A"
    assert names(walk("A", *later, now=LATER).confirmed) == "AB"


def test_a_100_key_announcement_is_cut_at_the_key_bound() -> None:
    secrets = [f"{0x1000 + i:064x}" for i in range(100)]
    keys = [sign_event(s, 1, "", [], 0).pubkey for s in secrets]
    owner = sign_event(KEY_SECRETS["A"], nip34.ANNOUNCEMENT, "", [["d", "r"], *(["m", k] for k in keys)], NOW - 10)
    backs = [sign_event(s, nip34.ANNOUNCEMENT, "", [["d", "r"], ["m", KEY["A"]]], NOW - 10) for s in secrets]
    table = {a.pubkey: a for a in (owner, *backs)}
    asked: list[str] = []

    def lookup(pk: str) -> Event | None:
        asked.append(pk)
        return table.get(pk)

    found = nip34.walk_maintainers(KEY["A"], "r", lookup, now=NOW)
    assert found.truncated
    assert len(found.confirmed) == 64 and found.confirmed == {KEY["A"], *keys[:63]}  # tag order
    assert len(asked) == len(set(asked)) == 64  # one lookup per key, no more
    small = nip34.walk_maintainers(KEY["A"], "r", table.get, now=NOW, limits=nip34.WalkLimits(6, 10))
    assert len(small.confirmed) == 10 and small.truncated


def test_the_round_bound_cuts_a_long_chain() -> None:
    chain = "ABCDEFGHIJ"
    anns = [repo_of(x, m(prev), m(nxt)) if prev else repo_of(x, m(nxt))
            for prev, x, nxt in zip(["", *chain], chain, [*chain[1:], "K"])]
    full = walk("A", *anns)
    assert names(full.confirmed) == "ABCDEFG" and full.truncated  # 6 rounds: A's list, then 5 more
    assert names(walk("A", *anns, limits=nip34.WalkLimits(2, 64)).confirmed) == "ABC"
    assert not walk("A", *anns, limits=nip34.WalkLimits(20, 64)).truncated


def test_maintainer_walk_ignores_announcements_of_other_identifiers_or_authors() -> None:
    a, b, c = KEY["A"], KEY["B"], KEY["C"]
    table = {a: repo_of("A", m("B"), m("C")), b: repo_of("B", m("A"), d="other"), c: repo_of("B", m("A"))}
    found = nip34.walk_maintainers(a, "r", table.get, now=NOW)
    assert found.confirmed == {a} and found.invited == {b, c}


@pytest.mark.parametrize(
    ("tag", "valid", "active"),
    [(m("B"), True, True), (m("B", T1), True, True), (m("B", T1, T2), True, False), (m("B", T1, T2, T3), True, True),
     (m("B", T1, "defer"), True, False), (m("B", "defer"), False, False), (m("B", T1, "x"), False, False),
     (m("B", T2, T1), False, False), (m("B", T1, T1), True, False), (m("B", LATER), True, False),
     (m("B", "1" * 16), False, False), (m("B", "١٢"), False, False)],
)
def test_role_entry(tag: list[str], valid: bool, active: bool) -> None:
    entry = nip34.role_entry(tag, NOW)
    assert entry is not None and (entry.valid, entry.active) == (valid, active)
    assert nip34.role_entry(["maintainers", KEY["B"]], NOW) is None
    assert nip34.role_entry(["m"], NOW) is None


def test_standing_and_owners_authorising() -> None:
    anns = [repo_of("A", m("B"), m("C")), repo_of("B", m("A")), repo_of("C"), repo_of("D", m("C")),
            repo_of("E", m("B")), repo_of("F", m("C"))]
    anns.append(repo_of("G", m("C")))
    table = {a.pubkey: a for a in anns}
    standing = nip34.standing(KEY["B"], anns, table.get, now=NOW)
    assert standing.confirmed_by == (KEY["A"], KEY["B"])  # B's own repo included
    assert standing.invited_by == (KEY["E"],)  # E names B, but B does not name E back
    invited_only = nip34.standing(KEY["C"], anns, table.get, now=NOW)
    assert invited_only.confirmed_by == (KEY["C"],)
    # invited by A, D, F, G, and through A (confirmed there) in B's repo too
    assert set(invited_only.invited_by) == {KEY[k] for k in "ABDFG"}
    assert nip34.owners_authorising(KEY["B"], anns, table.get, now=NOW) == [KEY["A"], KEY["B"]]
    assert nip34.owners_authorising(KEY["Z"], anns, table.get, now=NOW) == []


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
