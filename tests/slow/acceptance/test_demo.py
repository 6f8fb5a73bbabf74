"""Slow tier: the demo run again on the same home, and beside a database
that was already running (the fast tier runs it once, in
tests/acceptance/test_demo.py)."""

from pathlib import Path

from twisted.trial.unittest import TestCase

from lp_services.database.embedded import EmbeddedServer
from lp_services.testing.tiers import slow
from tests.acceptance.test_demo import check_demo_built_and_stopped, run_demo


@slow
class DemoAgainTests(TestCase):
    """What a user does next: the demo again, and with a database up."""

    def test_second_demo_on_the_same_home(self):
        """A second demo on a home the first one used (its database,
        store and recipe left behind) builds and stops just the same."""
        home = Path(self.mktemp()).resolve()
        home.mkdir()
        self.addCleanup(EmbeddedServer(home).stop)
        for attempt in (1, 2):
            check_demo_built_and_stopped(self, home, run_demo(home))

    def test_running_database_is_left_running(self):
        """A database that ran before the demo still runs after it."""
        home = Path(self.mktemp()).resolve()
        home.mkdir()
        server = EmbeddedServer(home)
        server.start()
        self.addCleanup(server.stop)
        result = run_demo(home)
        output = result.stdout + result.stderr
        self.assertEqual(result.returncode, 0, output)
        self.assertIn("COMPLETED / FULLYBUILT", output)
        self.assertNotIn("the embedded PostgreSQL the demo started", output)
        self.assertTrue(server.state().running)
