"""``lp-services job`` through click's runner, against real PostgreSQL."""

import json

from click.testing import CliRunner
from twisted.trial.unittest import TestCase

from lp_services.cli.main import cli
from lp_services.job.status import JobStatus
from lp_services.testing.database import DatabaseTestMixin

from tests.job.support import insert_job, job_row


class JobCommandTests(DatabaseTestMixin, TestCase):
    """enqueue / show / list / cancel / retry."""

    def invoke(self, *args):
        return CliRunner().invoke(cli, ["--database", self.database_url,
                                        "job", *args], env={},
                                  catch_exceptions=False)

    def count(self):
        conn = self.connect()
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM job")
            return cur.fetchone()[0]

    def test_enqueue_prints_id(self):
        """enqueue prints the new id; options land in the row."""
        first = self.invoke("enqueue", "noop")
        self.assertEqual(first.exit_code, 0, first.output)
        first_id = int(first.output)
        result = self.invoke(
            "enqueue", "sleep", "--data", '{"seconds": 3}', "--priority", "9",
            "--max-retries", "2", "--after", str(first_id),
            "--at", "2030-01-02T03:04:05")
        self.assertEqual(result.exit_code, 0, result.output)
        row = job_row(self.connect(), int(result.output))
        self.assertEqual(
            (row["json_data"], row["priority"], row["max_retries"],
             row["prerequisite"], row["scheduled_start"].isoformat()),
            ({"seconds": 3}, 9, 2, first_id, "2030-01-02T03:04:05+00:00"))

    def test_bad_input_is_one_clear_line_and_writes_nothing(self):
        """Unknown type, malformed JSON, rejected data, bad time, unknown
        prerequisite: exit 1 or 2 with one clear error, nothing written."""
        cases = [
            (["enqueue", "nope"], "unknown job type 'nope'"),
            (["enqueue", "build"], "unknown job type 'build'"),
            (["enqueue", "noop", "--data", "{x"], "not valid JSON"),
            (["enqueue", "sleep", "--data", "{}"], "invalid data for sleep"),
            (["enqueue", "noop", "--at", "tomorrow"], "not an ISO 8601 time"),
            (["enqueue", "noop", "--after", "999"], "no job with id 999"),
        ]
        for args, message in cases:
            result = self.invoke(*args)
            self.assertIn(result.exit_code, (1, 2), result.output)
            self.assertIn(message, result.output)
            self.assertNotIn("Traceback", result.output)
        self.assertEqual(self.count(), 0)

    def test_show_json(self):
        """show --json prints the row."""
        job_id = insert_job(self.connect(), "noop", {"a": 1})
        result = self.invoke("show", str(job_id), "--json")
        self.assertEqual(result.exit_code, 0, result.output)
        shown = json.loads(result.output)
        self.assertEqual((shown["id"], shown["kind"], shown["status"],
                          shown["data"]), (job_id, "native", "WAITING", {"a": 1}))
        table = self.invoke("show", str(job_id))
        self.assertIn("WAITING", table.output)
        missing = self.invoke("show", "999")
        self.assertEqual(missing.exit_code, 1)
        self.assertIn("no job or build with id 999", missing.output)

    def test_list_filters(self):
        """list --status/--type filter; --json is machine-readable; the
        table shows the rows."""
        conn = self.connect()
        waiting = insert_job(conn, "noop")
        insert_job(conn, "noop", status=2)
        insert_job(conn, "sleep", {"seconds": 1})
        result = self.invoke("list", "--status", "waiting", "--type", "noop",
                             "--json")
        self.assertEqual([j["id"] for j in json.loads(result.output)],
                         [waiting])
        table = self.invoke("list")
        self.assertEqual(table.exit_code, 0, table.output)
        self.assertIn("COMPLETED", table.output)
        self.assertIn("sleep", table.output)

    def test_cancel_and_retry(self):
        """cancel fails a waiting job; retry queues it again; retrying a
        waiting job is refused."""
        job_id = insert_job(self.connect(), "noop")
        result = self.invoke("cancel", str(job_id))
        self.assertEqual(result.exit_code, 0, result.output)
        self.assertEqual(job_row(self.connect(), job_id)["status"],
                         JobStatus.FAILED)
        result = self.invoke("retry", str(job_id))
        self.assertEqual(result.exit_code, 0, result.output)
        self.assertEqual(job_row(self.connect(), job_id)["status"],
                         JobStatus.WAITING)
        again = self.invoke("retry", str(job_id))
        self.assertEqual(again.exit_code, 1)
        self.assertIn("cannot go from WAITING to WAITING", again.output)
