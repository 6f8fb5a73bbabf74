"""Tests of the transactor (lp_services.database.transactor)."""

import psycopg2
import psycopg2.extensions
from storm.exceptions import DisconnectionError
from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from lp_services.database.transactor import (
    StormObjectLeak,
    Transactor,
    default_backoff,
)
from lp_services.filestore.model import LibraryFile
from lp_services.testing.database import DatabaseTestMixin


class TransactorTests(DatabaseTestMixin, TestCase):
    """Transactor.run against real PostgreSQL, with real worker threads."""

    def setUp(self):
        super().setUp()
        self.sleeps = []
        self.transactor = Transactor(self.database_url, reactor=reactor,
                                     max_threads=2, max_retries=3,
                                     sleep=self.sleeps.append)
        self.transactor.start()
        self.addCleanup(self.transactor.stop)

    def count_jobs(self):
        conn = self.connect()
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM job")
            return cur.fetchone()[0]

    def add_job(self, store, job_type="noop"):
        return store.execute("INSERT INTO job (job_type) VALUES (?)"
                             " RETURNING id", (job_type,)).get_one()[0]

    async def test_commits_on_success(self):
        """A function that returns has its transaction committed."""
        job_id = await self.transactor.run(self.add_job)
        self.assertIsInstance(job_id, int)
        self.assertEqual(self.count_jobs(), 1)

    async def test_aborts_on_error(self):
        """A function that raises has its transaction rolled back."""
        def add_then_fail(store):
            self.add_job(store)
            raise ValueError("no")

        with self.assertRaises(ValueError):
            await self.transactor.run(add_then_fail)
        self.assertEqual(self.count_jobs(), 0)
        self.assertEqual(self.sleeps, [])

    async def test_refuses_storm_objects(self):
        """Returning a Storm object (even nested) fails and rolls back."""
        def leak(store):
            self.add_job(store)
            record = LibraryFile()
            record.sha1, record.size, record.filename = "a" * 40, 1, "x"
            store.add(record)
            return {"jobs": [record]}

        with self.assertRaises(StormObjectLeak) as caught:
            await self.transactor.run(leak)
        self.assertIn("result['jobs'][0]", str(caught.exception))
        self.assertEqual(self.count_jobs(), 0)

    async def test_retries_serialization_failure(self):
        """A serialization failure reruns the whole function, then commits."""
        calls = []

        def flaky(store):
            calls.append(1)
            self.add_job(store)
            if len(calls) == 1:
                store.execute(
                    "DO $$ BEGIN RAISE EXCEPTION 'conflict' "
                    "USING ERRCODE = 'serialization_failure'; END $$")
            return len(calls)

        self.assertEqual(await self.transactor.run(flaky), 2)
        self.assertEqual(self.count_jobs(), 1)
        self.assertEqual(self.sleeps, [default_backoff(1)])

    async def test_retries_lost_connection(self):
        """A connection killed under the function is reconnected and retried."""
        calls = []

        def killed_once(store):
            calls.append(1)
            if len(calls) == 1:
                pid = store.execute("SELECT pg_backend_pid()").get_one()[0]
                admin = psycopg2.connect(self.database_url)
                admin.autocommit = True
                with admin.cursor() as cur:
                    cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
                admin.close()
            return self.add_job(store)

        await self.transactor.run(killed_once)
        self.assertEqual(len(calls), 2)
        self.assertEqual(self.count_jobs(), 1)

    async def test_retries_connection_lost_under_a_raw_cursor(self):
        """A connection killed between transactions and first used through
        raw_cursor (psycopg2's error, not Storm's) is retried on a new
        connection."""
        from lp_services.database.sql import raw_cursor

        def pid(store):
            return store.execute("SELECT pg_backend_pid()").get_one()[0]
        first = await self.transactor.run(pid)
        admin = psycopg2.connect(self.database_url)
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(%s)", (first,))
        admin.close()
        calls = []

        def raw(store):
            calls.append(1)
            cursor = raw_cursor(store)
            cursor.execute("SELECT pg_backend_pid()")
            return cursor.fetchone()[0]
        second = await self.transactor.run(raw)
        self.assertEqual(len(calls), 2)
        self.assertNotEqual(second, first)

    def test_raw_cursor_costs_no_extra_statement(self):
        """raw_cursor on a connected Store sends nothing through Storm
        (Storm's tracer API sees every statement Storm runs)."""
        from storm.tracer import install_tracer, remove_tracer_type

        from lp_services.database.sql import raw_cursor

        seen = []

        class Tracer:
            def connection_raw_execute(self, connection, raw_cursor,
                                       statement, params):
                seen.append(statement)

        def run(store):
            store.execute("SELECT 1")
            seen.clear()
            install_tracer(Tracer())
            try:
                for _ in range(3):
                    cursor = raw_cursor(store)
                    cursor.execute("SELECT 2")
            finally:
                remove_tracer_type(Tracer)
            return cursor.fetchone()[0]
        self.assertEqual(self.transactor.run_blocking(run), 2)
        self.assertEqual(seen, [])

    async def test_retries_are_bounded(self):
        """After max_retries the retryable error propagates."""
        def always(store):
            raise DisconnectionError("gone")

        with self.assertRaises(DisconnectionError):
            await self.transactor.run(always)
        self.assertEqual(self.sleeps, [default_backoff(n) for n in (1, 2, 3)])

    async def test_runs_off_the_reactor_thread(self):
        """The function runs in a worker thread, not the reactor's."""
        import threading

        main = threading.get_ident()
        ident = await self.transactor.run(lambda store: threading.get_ident())
        self.assertNotEqual(ident, main)

    def test_backoff_is_bounded(self):
        """default_backoff doubles from 50 ms and never exceeds 2 s."""
        self.assertEqual(default_backoff(1), 0.05)
        self.assertEqual(default_backoff(2), 0.1)
        self.assertEqual(default_backoff(30), 2.0)

    def test_serialization_error_class_is_retryable(self):
        """psycopg2's TransactionRollbackError counts as retryable."""
        from lp_services.database.transactor import is_retryable

        self.assertTrue(is_retryable(
            psycopg2.extensions.TransactionRollbackError("x")))
        self.assertFalse(is_retryable(psycopg2.IntegrityError("x")))


class HealthLogTests(DatabaseTestMixin, TestCase):
    """The transactor logs one line when the database goes, one when back."""

    async def test_outage_is_two_log_lines(self):
        """Repeated disconnections log once; the next success logs once."""
        from twisted.logger import globalLogPublisher

        events = []
        observer = events.append
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        transactor = Transactor(self.database_url, reactor=reactor,
                                max_retries=0, sleep=lambda s: None)
        transactor.start()
        self.addCleanup(transactor.stop)

        def gone(store):
            raise DisconnectionError("server closed the connection")

        for _ in range(3):
            with self.assertRaises(DisconnectionError):
                await transactor.run(gone)
        self.assertTrue(transactor.database_down)
        await transactor.run(lambda store: 1)
        await transactor.run(lambda store: 1)
        self.assertFalse(transactor.database_down)
        mine = [e["log_format"] for e in events
                if e.get("log_namespace", "").endswith("Transactor")]
        self.assertEqual(mine, [
            "lost the database at {url}: {reason}; retrying",
            "the database at {url} is back after {seconds:.1f}s"])


class AfterCommitTests(DatabaseTestMixin, TestCase):
    """after_commit callbacks run once, and only for committed work."""

    def setUp(self):
        super().setUp()
        self.transactor = Transactor(self.database_url, reactor=reactor,
                                     max_retries=2, sleep=lambda s: None)
        self.transactor.start()
        self.addCleanup(self.transactor.stop)

    async def test_commit_rollback_and_retry(self):
        """Committed: called once. Raised: dropped. Retried: called once."""
        from lp_services.database.transactor import after_commit

        calls = []

        def ok(store):
            after_commit(lambda: calls.append("ok"))

        def fails(store):
            after_commit(lambda: calls.append("failed"))
            raise ValueError("no")

        attempts = []

        def retried(store):
            attempts.append(1)
            after_commit(lambda: calls.append("retried"))
            if len(attempts) == 1:
                raise DisconnectionError("gone")

        await self.transactor.run(ok)
        with self.assertRaises(ValueError):
            await self.transactor.run(fails)
        await self.transactor.run(retried)
        self.assertEqual(calls, ["ok", "retried"])

    def test_outside_a_transaction_is_dropped(self):
        """after_commit with no transactor transaction does nothing."""
        from lp_services.database.transactor import after_commit

        calls = []
        after_commit(lambda: calls.append(1))
        self.assertEqual(calls, [])
