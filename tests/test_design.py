"""docs/design.md's picture of the house against the real imports.

The rooms table (between the ``rooms: begin/end`` markers) says which
rooms each room may import; every ``import`` of ``lp_services`` in
``src/`` is checked against it, so the picture cannot drift from the code.
"""

import ast
import re
from pathlib import Path

from twisted.trial.unittest import TestCase

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "lp_services"
KERNEL = {"clock", "config", "metrics", "process"}


def read_rules(text: str) -> dict[str, set[str]]:
    """``{room or dotted module: allowed rooms}`` from the design page."""
    table = text.split("<!-- rooms: begin -->")[1].split("<!-- rooms: end -->")[0]
    rules = {}
    for line in table.strip().splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        name = re.findall(r"`([^`]+)`", cells[0])[0]
        allowed = set(re.findall(r"`([^`]+)`", cells[2]))
        if "kernel" in allowed:
            allowed = (allowed - {"kernel"}) | KERNEL
        rules[name] = allowed
    return rules


def room_of(module: str) -> str:
    """``lp_services.job.runner`` -> ``job``; root modules are their own."""
    return module.split(".")[1]


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_rooms(source: str):
    """(line, room) of every import of an lp_services module."""
    for node in ast.walk(ast.parse(source)):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 \
                and node.module:
            if node.module == "lp_services":
                names = ["lp_services." + a.name for a in node.names]
            else:
                names = [node.module]
        for name in names:
            if name.startswith("lp_services."):
                yield node.lineno, room_of(name)


def violations(module: str, source: str, rules) -> list[str]:
    """The imports of ``module`` the rules do not allow."""
    if module.count(".") < 1:
        return []
    room = room_of(module)
    if room not in rules:
        return ["%s: room %r is not in docs/design.md" % (module, room)]
    allowed = set(rules[room]) | {room}
    for dotted, extra in rules.items():
        if "." in dotted and (module == "lp_services." + dotted):
            allowed |= extra
    if "*" in allowed:
        return []
    return ["%s:%d imports %s" % (module, line, target)
            for line, target in imported_rooms(source)
            if target not in allowed]


class HouseTests(TestCase):
    """The design page's rooms table is what the code does."""

    def rules(self):
        return read_rules((ROOT / "docs" / "design.md").read_text())

    def test_every_import_is_allowed(self):
        """No module of src/ imports a room its room may not."""
        rules = self.rules()
        found = []
        for path in sorted(SRC.rglob("*.py")):
            found += violations(module_name(path), path.read_text(), rules)
        self.assertEqual(found, [])

    def test_every_room_is_in_the_table(self):
        """Every package and root module of src/ has a row."""
        rooms = {p.name for p in SRC.iterdir()
                 if p.is_dir() and (p / "__init__.py").exists()}
        rooms |= {p.stem for p in SRC.glob("*.py") if p.stem != "__init__"}
        self.assertEqual(rooms - set(self.rules()), set())

    def test_a_forbidden_import_is_caught(self):
        """A synthetic agent module importing the buildmaster, and a job
        module importing the file store, are reported; the same imports
        from rooms allowed them are not."""
        rules = self.rules()
        self.assertEqual(
            violations("lp_services.slave.synthetic",
                       "from lp_services.buildmaster import queue\n", rules),
            ["lp_services.slave.synthetic:1 imports buildmaster"])
        self.assertEqual(
            violations("lp_services.job.synthetic",
                       "import lp_services.filestore.store\n", rules),
            ["lp_services.job.synthetic:1 imports filestore"])
        self.assertEqual(
            violations("lp_services.buildmaster.synthetic",
                       "from lp_services.filestore import store\n", rules),
            [])

    def test_assembly_rows_apply_to_their_module_only(self):
        """buildmaster.tap may import web; other buildmaster modules may
        not."""
        rules = self.rules()
        source = "from lp_services.web import site\n"
        self.assertEqual(
            violations("lp_services.buildmaster.tap", source, rules), [])
        self.assertEqual(
            violations("lp_services.buildmaster.scanner", source, rules),
            ["lp_services.buildmaster.scanner:1 imports web"])


TESTS = ROOT / "tests"


def slow_marked_outside(tests: Path) -> list[str]:
    """Test modules outside ``tests/slow`` that mark tests slow: the tiers
    are directories, so such a test would be run (skipped) by the fast
    tier and never where the slow tier is run alone."""
    found = []
    for path in sorted(tests.rglob("test_*.py")):
        if path.relative_to(tests).parts[0] == "slow":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if (isinstance(node, ast.ImportFrom)
                    and node.module == "lp_services.testing.tiers"):
                found.append(str(path.relative_to(tests)))
    return found


class TierLayoutTests(TestCase):
    """Test tiers by directory (docs/design.md, Tests)."""

    def test_slow_tests_live_in_tests_slow(self):
        """No test module outside tests/slow uses the slow marker."""
        self.assertEqual(slow_marked_outside(TESTS), [])

    def test_a_slow_test_outside_is_caught(self):
        """A synthetic module under tests/web marking a class slow is
        reported."""
        tests = Path(self.mktemp())
        (tests / "web").mkdir(parents=True)
        (tests / "slow").mkdir()
        (tests / "web" / "test_x.py").write_text(
            "from lp_services.testing.tiers import slow\n")
        (tests / "slow" / "test_y.py").write_text(
            "from lp_services.testing.tiers import slow\n")
        self.assertEqual(slow_marked_outside(tests), ["web/test_x.py"])

    def test_every_slow_test_case_is_marked(self):
        """Every module under tests/slow imports the marker, so a slow
        test named explicitly with --fast skips with a reason."""
        unmarked = [str(p.relative_to(TESTS))
                    for p in sorted((TESTS / "slow").rglob("test_*.py"))
                    if "from lp_services.testing.tiers import slow"
                    not in p.read_text()]
        self.assertEqual(unmarked, [])
