"""The house's layout as the design card draws it (issue 11, item 3): small modules, and
imports that point one way between the four packages.

- No module of config/, storage/, relay/ or purgatory/ is over 400 lines: a module that
  grows past that does several jobs and is split by job (a package whose `__init__`
  re-exports what importers use is the usual way).
- Layers: `config` imports none of the other three; `storage` only `config`; `purgatory`
  only `storage` and `config`; `relay` any of them. Each package may import itself. The
  import graph is tests/test_imports.py's (every `import` and `from`, TYPE_CHECKING and
  late imports included), so a layer broken only for the type checker still counts."""

from __future__ import annotations

from tests.test_imports import PACKAGES, ROOT, graph

MAX_LINES = 400

#: Modules allowed over MAX_LINES for now, each with the reason (none today: purgatory/service.py,
#: the last one, was split by job in issue 11)
KNOWN_LONG: dict[str, str] = {}

#: What each package may import besides itself.
ALLOWED: dict[str, frozenset[str]] = {
    "config": frozenset(),
    "storage": frozenset({"config"}),
    "purgatory": frozenset({"storage", "config"}),
    "relay": frozenset({"purgatory", "storage", "config"}),
}


def line_counts() -> dict[str, int]:
    """Lines of every module of the four packages, by path relative to the repo root."""
    return {str(path.relative_to(ROOT)): len(path.read_text().splitlines())
            for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


def too_long(counts: dict[str, int], limit: int, known: dict[str, str]) -> tuple[list[str], list[str]]:
    """(modules over `limit` that are not known exceptions, known exceptions no longer over it)."""
    over = sorted(f"{path} ({lines} lines)" for path, lines in counts.items() if lines > limit and path not in known)
    stale = sorted(path for path in known if counts.get(path, 0) <= limit)
    return over, stale


def layer_violations(edges: dict[str, set[str]], allowed: dict[str, frozenset[str]]) -> list[str]:
    """Every import from one package into another that `allowed` does not permit."""
    found: list[str] = []
    for module, targets in sorted(edges.items()):
        package = module.split(".")[0]
        for target in sorted(targets):
            other = target.split(".")[0]
            if other != package and other not in allowed.get(package, frozenset()):
                found.append(f"{module} -> {target}")
    return found


# -- the checks, on hand-made inputs: each rule does fail ---------------------------------------

def test_too_long_finds_long_modules_and_stale_exceptions() -> None:
    counts = {"a.py": 401, "b.py": 400, "c.py": 900, "d.py": 12}
    over, stale = too_long(counts, 400, {"c.py": "being split", "d.py": "was long once"})
    assert over == ["a.py (401 lines)"]
    assert stale == ["d.py"]
    assert too_long({"a.py": 10}, 400, {}) == ([], [])


def test_layer_violations_catch_imports_against_the_layers() -> None:
    edges = {
        "config.settings": {"storage.repos"},  # config sees nothing above it
        "storage.repos": {"config.settings", "storage.nostr", "purgatory.service"},
        "purgatory.service": {"storage.repos", "config", "relay.app"},
        "relay.app": {"purgatory.service", "storage.repos", "config.settings", "relay.http"},
    }
    assert layer_violations(edges, ALLOWED) == [
        "config.settings -> storage.repos",
        "purgatory.service -> relay.app",
        "storage.repos -> purgatory.service",
    ]
    assert layer_violations({"relay.app": {"purgatory.service"}, "purgatory.x": {"storage.y"}}, ALLOWED) == []


def test_line_counts_are_read() -> None:
    """A guard for the test itself: the modules are found and their lines counted."""
    counts = line_counts()
    assert "relay/app.py" in counts and "config/settings.py" in counts
    assert all(lines > 0 for path, lines in counts.items() if not path.endswith("__init__.py"))


# -- the house ----------------------------------------------------------------------------

def test_no_module_is_over_400_lines() -> None:
    over, stale = too_long(line_counts(), MAX_LINES, KNOWN_LONG)
    assert not over, f"modules over {MAX_LINES} lines (split them by job): " + ", ".join(over)
    assert not stale, "no longer over the limit, remove from KNOWN_LONG: " + ", ".join(stale)


def test_imports_follow_the_layers() -> None:
    found = layer_violations(graph(), ALLOWED)
    assert not found, "imports against the layers (relay -> purgatory -> storage -> config): " + "; ".join(found)

