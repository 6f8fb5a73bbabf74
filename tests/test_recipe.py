"""Tests of recipe parsing and checking (lp_services.recipe)."""

from pathlib import Path

from twisted.trial.unittest import TestCase

from lp_services.recipe import (
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

        from lp_services.recipe import build_script

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

        from lp_services.recipe import build_script

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
