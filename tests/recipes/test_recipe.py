"""Tests of recipe parsing and checking (lp_services.recipes.recipe)."""

import json
import os
from pathlib import Path

from twisted.trial.unittest import TestCase

from lp_services.recipes.recipe import (
    RecipeError,
    load_recipe_file,
    parse_recipe,
    results_match,
)

GOOD = {
    "name": "hello",
    "processor": "amd64",
    "script": "#!/bin/sh\necho hi > out.txt\n",
    "results": ["*.txt"],
    "sources": [{"url": "http://127.0.0.1/hello.tar.gz", "sha1": "a" * 40}],
}


class ParseRecipeTests(TestCase):
    """parse_recipe accepts good recipes and names what is wrong in bad ones."""

    def test_good_recipe_with_defaults(self):
        """Optional fields get their documented defaults."""
        recipe = parse_recipe(GOOD)
        self.assertEqual((recipe.series, recipe.urgency, recipe.virtualized),
                         ("default", "medium", False))
        self.assertEqual(recipe.sources[0].filename, "hello.tar.gz")
        self.assertEqual(parse_recipe(recipe.to_json()), recipe)

    def assertNames(self, data, *fragments):
        error = self.assertRaises(RecipeError, parse_recipe, data)
        for fragment in fragments:
            self.assertIn(fragment, str(error))

    def test_missing_field(self):
        """A missing required field is named."""
        for name in ("name", "processor", "script"):
            data = dict(GOOD)
            del data[name]
            self.assertNames(data, repr(name), "missing")

    def test_wrong_types(self):
        """A field of the wrong type is named with the type expected."""
        self.assertNames(dict(GOOD, virtualized="yes"), "'virtualized'", "bool")
        self.assertNames(dict(GOOD, results="*.txt"), "'results'", "list")
        self.assertNames(dict(GOOD, name=7), "'name'", "str")

    def test_bad_values(self):
        """Bad urgency, names, patterns and unknown fields are refused."""
        self.assertNames(dict(GOOD, urgency="now"), "'urgency'")
        self.assertNames(dict(GOOD, name="Bad Name"), "'name'")
        self.assertNames(dict(GOOD, results=["../x"]), "'results'")
        self.assertNames(dict(GOOD, colour="blue"), "unknown recipe field 'colour'")
        self.assertNames(dict(GOOD, script="   "), "'script' is empty")
        self.assertNames([], "table")

    def test_bad_sources(self):
        """Each source's URL, sha1 and file name are checked and named."""
        self.assertNames(dict(GOOD, sources=[{"url": "ftp://x/a", "sha1": "a" * 40}]),
                         "sources[0].url")
        self.assertNames(dict(GOOD, sources=[{"url": "http://x/a", "sha1": "XYZ"}]),
                         "sources[0].sha1")
        self.assertNames(dict(GOOD, sources=[{"url": "http://x/a", "sha1": "a" * 40,
                                              "filename": "../etc"}]),
                         "sources[0].filename")
        self.assertNames(dict(GOOD, sources=[{"url": "http://x/a", "sha1": "a" * 40},
                                             {"url": "http://y/a", "sha1": "b" * 40}]),
                         "names one file twice")

    def test_result_patterns_are_shell_safe(self):
        """Patterns with quoting or separator characters are refused."""
        for bad in ["a'b", "a;b", "a b", "$(x)", "a|b", ""]:
            self.assertNames(dict(GOOD, results=[bad]), "'results'")

    def test_build_script_keeps_only_results(self):
        """The generated build.sh deletes outputs no pattern names.

        Runs it with a real /bin/sh over a real directory.
        """
        import subprocess

        from lp_services.recipes.recipe import build_script

        work = Path(self.mktemp()).resolve()
        (work / "out").mkdir(parents=True)
        (work / "recipe.sh").write_text(
            "cd out && touch keep.txt SHA1SUMS drop.o .depwait .hidden\n")
        script = build_script(["*.txt", "SHA1SUMS"]).replace(
            "/work/out", str(work / "out"))
        (work / "build.sh").write_text(script)
        result = subprocess.run(["/bin/sh", "build.sh"], cwd=work,
                                capture_output=True, text=True)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(sorted(p.name for p in (work / "out").iterdir()),
                         [".depwait", "SHA1SUMS", "keep.txt"])
        self.assertIn("not a result (no pattern matches): drop.o", result.stdout)

    def test_build_script_keeps_exit_status(self):
        """A failing recipe script fails the build with its own status."""
        import subprocess

        from lp_services.recipes.recipe import build_script

        work = Path(self.mktemp()).resolve()
        work.mkdir()
        (work / "recipe.sh").write_text("exit 100\n")
        (work / "build.sh").write_text(build_script(["*"]))
        result = subprocess.run(["/bin/sh", "build.sh"], cwd=work)
        self.assertEqual(result.returncode, 100)

    def test_results_match(self):
        """No patterns match everything; otherwise any pattern may match."""
        self.assertTrue(results_match([], "anything"))
        self.assertTrue(results_match(["*.deb", "*.txt"], "a.txt"))
        self.assertFalse(results_match(["*.deb"], "a.txt"))


class LoadRecipeFileTests(TestCase):
    """Reading recipe files for `recipe request`."""

    def test_script_file_is_inlined(self):
        """script_file is read relative to the recipe and becomes script."""
        directory = Path(self.mktemp())
        directory.mkdir()
        (directory / "build.sh").write_text("echo built\n")
        (directory / "r.toml").write_text(
            'name = "hello"\nprocessor = "amd64"\nscript_file = "build.sh"\n')
        data = load_recipe_file(directory / "r.toml")
        self.assertEqual(data["script"], "echo built\n")
        self.assertEqual(parse_recipe(data).script, "echo built\n")

    def test_not_toml(self):
        """A file that is not TOML is a RecipeError naming the file."""
        path = Path(self.mktemp())
        path.write_text("name = \n")
        error = self.assertRaises(RecipeError, load_recipe_file, path)
        self.assertIn("not valid TOML", str(error))

    def test_missing_file(self):
        """An unreadable recipe file is a RecipeError."""
        self.assertRaises(RecipeError, load_recipe_file, Path("/nonexistent.toml"))


class ScriptFileConfinementTests(TestCase):
    """script_file as an attacker wrote it (issue 19): it may only name a
    file inside the recipe's folder, and nothing else is ever read."""

    def setUp(self):
        top = Path(self.mktemp()).resolve()
        self.folder = top / "recipes"
        (self.folder / "sub").mkdir(parents=True)
        (self.folder / "sub" / "build.sh").write_text("echo inside\n")
        self.secret = top / "agent-secret"
        self.secret.write_text("s3cret-token\n")

    def load(self, script_file):
        recipe = self.folder / "r.toml"
        recipe.write_text('name = "hello"\nprocessor = "amd64"\n'
                          'script_file = %s\n' % json.dumps(script_file))
        return load_recipe_file(recipe)

    def assertRefused(self, script_file, fragment):
        error = self.assertRaises(RecipeError, self.load, script_file)
        self.assertIn(fragment, str(error))
        self.assertNotIn("s3cret", str(error))
        self.assertNotIn("root:", str(error))

    def test_absolute_paths_refused(self):
        """/etc/shadow, /etc/passwd or the agent's secret by absolute path
        are refused without being read."""
        for path in ("/etc/shadow", "/etc/passwd", str(self.secret)):
            self.assertRefused(path, "relative to the recipe's folder")

    def test_dot_dot_refused(self):
        """Any '..' component is refused, even one that comes back in."""
        for path in ("../agent-secret", "sub/../../agent-secret",
                     "sub/../sub/build.sh", "../../../../etc/passwd"):
            self.assertRefused(path, "without '..'")

    def test_symlink_escapes_refused(self):
        """A link (or a link to a folder) leading outside is refused; a
        link that stays inside is followed."""
        (self.folder / "evil.sh").symlink_to(self.secret)
        (self.folder / "etc").symlink_to("/etc")
        (self.folder / "inside.sh").symlink_to("sub/build.sh")
        self.assertRefused("evil.sh", "must stay inside")
        self.assertRefused("etc/passwd", "must stay inside")
        self.assertEqual(self.load("inside.sh")["script"], "echo inside\n")
        self.assertEqual(self.load("sub/build.sh")["script"], "echo inside\n")

    def test_swapped_link_is_caught_on_the_opened_file(self):
        """What was opened is checked too: a path that passed the first
        check but opens a file outside (a link swapped in between) is
        refused."""
        from lp_services.recipes import recipe

        (self.folder / "evil.sh").symlink_to(self.secret)
        checked = []
        real_resolve = Path.resolve

        def resolve_before_the_swap(path, *args, **kwargs):
            # The first check sees the link's name as if it were a
            # plain file inside; the open then follows the real link.
            if path.name == "evil.sh" and not checked:
                checked.append(path)
                return path
            return real_resolve(path, *args, **kwargs)
        self.patch(recipe.Path, "resolve", resolve_before_the_swap)
        self.assertRefused("evil.sh", "must stay inside")
        self.assertEqual(len(checked), 1)

    def test_not_regular_or_too_large_refused(self):
        """Folders, FIFOs, non-UTF-8 and oversized files are refused with
        a message (a FIFO does not hang the command)."""
        from lp_services.recipes.recipe import MAX_SCRIPT_SIZE

        os.mkfifo(self.folder / "fifo")
        self.assertRefused("sub", "not a regular file")
        self.assertRefused("fifo", "not a regular file")
        (self.folder / "big.sh").write_bytes(b"#" * (MAX_SCRIPT_SIZE + 1))
        self.assertRefused("big.sh", "larger than")
        (self.folder / "bin.sh").write_bytes(b"\xff\xfe")
        self.assertRefused("bin.sh", "not UTF-8")
        self.assertRefused("missing.sh", "cannot read script_file")
        self.assertRefused("", "relative to the recipe's folder")
