"""`twistd jobrunner` options (lp_services.job.tap)."""

from twisted.python import usage
from twisted.trial.unittest import TestCase

from lp_services.job.runner import JobRunner
from lp_services.job.tap import Options, makeService


class OptionsTests(TestCase):
    """Parsing and validating the daemon's options."""

    def parse(self, *args):
        options = Options()
        if "--database" not in args:
            args = ("--database", "postgresql://x@127.0.0.1:1/x") + args
        options.parseOptions(list(args))
        return options

    def test_defaults_claim_every_known_type(self):
        """Without --include, every registered type is claimed."""
        options = self.parse()
        self.assertTrue({"noop", "sleep", "http-notify", "library-gc"}
                        <= set(options["types"]))
        self.assertNotIn("build", options["types"])

    def test_include_exclude(self):
        """--include narrows, --exclude removes."""
        options = self.parse("--include", "noop", "--include", "sleep",
                             "--exclude", "sleep")
        self.assertEqual(options["types"], ["noop"])

    def test_module_registers_types(self):
        """--module imports more types."""
        options = self.parse("--module", "lp_services.job.testtypes",
                             "--include", "test.crash")
        self.assertEqual(options["types"], ["test.crash"])

    def test_errors(self):
        """Unknown types, empty selections and nonsense numbers are refused."""
        for args in (["--include", "nope"], ["--exclude", "build"],
                     ["--include", "noop", "--exclude", "noop"],
                     ["--concurrency", "0"], ["--poll-interval", "0"],
                     ["--module", "no.such.module"]):
            self.assertRaises(usage.UsageError, self.parse, *args)

    def test_no_database(self):
        """Without a URL and without a running embedded server: one line."""
        import os

        options = Options()
        old = os.environ.pop("LP_DATABASE_URL", None)
        home = os.environ.get("LP_HOME")
        os.environ["LP_HOME"] = self.mktemp()
        try:
            error = self.assertRaises(usage.UsageError, options.parseOptions,
                                      [])
        finally:
            if old is not None:
                os.environ["LP_DATABASE_URL"] = old
            if home is None:
                del os.environ["LP_HOME"]
            else:
                os.environ["LP_HOME"] = home
        self.assertIn("is not running", str(error))

    def test_make_service(self):
        """makeService builds a JobRunner with the options (no I/O yet)."""
        options = self.parse("--database", "postgresql://x@127.0.0.1:1/x",
                             "--concurrency", "3", "--holder", "r1",
                             "--include", "noop", "--depth", "2",
                             "--poll-interval", "7", "--grace", "9")
        service = makeService(options)
        runner = service.getServiceNamed("jobrunner")
        self.assertIsInstance(runner, JobRunner)
        self.assertEqual((runner.holder, runner.concurrency,
                          sorted(runner.types), runner.poll_interval,
                          runner.grace, runner.claim_batch),
                         ("r1", 3, ["noop"], 7.0, 9.0, 6))

    def test_recipe_is_a_default_type(self):
        """Runners claim recipe jobs without --module."""
        self.assertIn("recipe", self.parse()["types"])

    def test_config_file(self):
        """A [jobrunner] TOML table sets options; the command line wins."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write('[jobrunner]\nconcurrency = 6\ngrace = 12.5\n'
                    'include = ["noop", "sleep"]\nholder = "from-file"\n'
                    'metrics_port = "tcp:0"\n')
        options = self.parse("--config", path, "--holder", "from-cli")
        self.assertEqual((options["concurrency"], options["grace"],
                          options["types"], options["holder"],
                          options["metrics-port"]),
                         (6, 12.5, ["noop", "sleep"], "from-cli", "tcp:0"))

    def test_bad_config_files(self):
        """Unknown keys, wrong types and broken TOML are usage errors."""
        path = self.mktemp()
        for text in ("[jobrunner]\nnonsense = 1\n",
                     "[jobrunner]\nconcurrency = \"many\"\n",
                     "[jobrunner]\ninclude = \"noop\"\n",
                     "concurrency =\n"):
            with open(path, "w") as f:
                f.write(text)
            self.assertRaises(usage.UsageError, self.parse, "--config", path)
        self.assertRaises(usage.UsageError, self.parse, "--config",
                          "/nonexistent.toml")

    def test_metrics_port_adds_a_metrics_service(self):
        """--metrics-port serves /metrics beside the runner."""
        options = self.parse("--metrics-port", "tcp:0:interface=127.0.0.1")
        service = makeService(options)
        self.assertEqual(len(list(service)), 2)
        self.assertEqual(len(list(makeService(self.parse()))), 1)
