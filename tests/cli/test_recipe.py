"""``lp-services recipe request`` refuses statically bad recipes at once."""

from pathlib import Path

from twisted.trial.unittest import TestCase

from lp_services.testing.database import DatabaseTestMixin
from tests.cli.helpers import invoke


class RecipeRequestTests(DatabaseTestMixin, TestCase):
    """A bad recipe: exit 1, one line naming the file and field, no job."""

    def request(self, text):
        path = Path(self.mktemp())
        path.write_text(text)
        return path, invoke("--database", self.database_url, "recipe",
                            "request", str(path))

    def jobs(self):
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM job")
            return cur.fetchone()[0]

    def test_missing_name(self):
        """No `name`: refused, nothing queued."""
        path, result = self.request('processor = "amd64"\nscript = "true"\n')
        self.assertEqual((result.exit_code, result.stdout, result.stderr),
                         (1, "", "Error: %s: recipe field 'name' is missing\n"
                          % path))
        self.assertEqual(self.jobs(), 0)

    def test_bad_field(self):
        """An urgency that does not exist: refused, nothing queued."""
        path, result = self.request(
            'name = "x"\nprocessor = "amd64"\nscript = "true"\n'
            'urgency = "now"\n')
        self.assertEqual((result.exit_code, result.stderr),
                         (1, "Error: %s: recipe field 'urgency' must be one "
                          "of low, medium, high, emergency\n" % path))
        self.assertEqual(self.jobs(), 0)

    def test_unknown_field(self):
        """A misspelt field: refused, nothing queued."""
        path, result = self.request(
            'name = "x"\nprocessor = "amd64"\nscript = "true"\nsorces = []\n')
        self.assertEqual((result.exit_code, result.stderr),
                         (1, "Error: %s: unknown recipe field 'sorces'\n"
                          % path))
        self.assertEqual(self.jobs(), 0)

    def test_good_recipe_is_queued(self):
        """A statically good recipe is queued as before: its id, exit 0."""
        _, result = self.request(
            'name = "x"\nprocessor = "amd64"\nscript = "true"\n')
        self.assertEqual(result.exit_code, 0, result.output)
        self.assertTrue(result.stdout.strip().isdigit())
        self.assertEqual(self.jobs(), 1)
