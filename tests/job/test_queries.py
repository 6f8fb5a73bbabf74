"""The runner's SQL against real PostgreSQL: claims, leases, outcomes."""

from datetime import timedelta

from twisted.trial.unittest import TestCase

from lp_services.job import queries
from lp_services.job.status import JobStatus
from lp_services.testing.clock import EPOCH
from lp_services.testing.database import DatabaseTestMixin

from tests.job.support import insert_job, job_row

T0 = EPOCH
HOLDER = "runner-a"


def run(conn, sql, **params):
    with conn.cursor() as cur:
        cur.execute(sql, params)
        rows = cur.fetchall()
    conn.commit()
    return rows


def claim(conn, limit=10, types=("noop",), leases=None, now=T0,
          holder=HOLDER, commit=True):
    with conn.cursor() as cur:
        cur.execute(queries.CLAIM, {
            "now": now, "holder": holder, "limit": limit,
            "types": list(types),
            "leases": leases or [60.0] * len(types)})
        rows = cur.fetchall()
    if commit:
        conn.commit()
    return rows


class ClaimTests(DatabaseTestMixin, TestCase):
    """The claim statement."""

    def test_claim_sets_lease_attempt_and_status(self):
        """One statement: RUNNING, attempt + 1, lease, holder, start."""
        conn = self.connect()
        job_id = insert_job(conn, scheduled_start=T0)
        rows = claim(conn, leases=[90.0])
        self.assertEqual([r[0] for r in rows], [job_id])
        row = job_row(conn, job_id)
        self.assertEqual(row["status"], JobStatus.RUNNING)
        self.assertEqual(row["attempt_count"], 1)
        self.assertEqual(row["lease_holder"], HOLDER)
        self.assertEqual(row["lease_expires"], T0 + timedelta(seconds=90))
        self.assertEqual(row["date_started"], T0)

    def test_priority_then_oldest_and_limit(self):
        """Highest priority first, then lowest id; at most ``limit``."""
        conn = self.connect()
        low = insert_job(conn, scheduled_start=T0, priority=0)
        high_old = insert_job(conn, scheduled_start=T0, priority=5)
        high_new = insert_job(conn, scheduled_start=T0, priority=5)
        self.assertEqual([r[0] for r in claim(conn, limit=2)],
                         sorted([high_old, high_new]))
        self.assertEqual([r[0] for r in claim(conn)], [low])
        self.assertEqual(claim(conn), [])

    def test_only_due_jobs(self):
        """A job scheduled in the future is not claimed until it is due."""
        conn = self.connect()
        job_id = insert_job(conn, scheduled_start=T0 + timedelta(seconds=30))
        self.assertEqual(claim(conn), [])
        self.assertEqual([r[0] for r in claim(
            conn, now=T0 + timedelta(seconds=30))], [job_id])

    def test_only_known_types_and_never_builds(self):
        """Types the runner does not list (including builds) stay WAITING."""
        conn = self.connect()
        insert_job(conn, "build", scheduled_start=T0)
        insert_job(conn, "sleep", scheduled_start=T0, data={"seconds": 1})
        noop = insert_job(conn, scheduled_start=T0)
        self.assertEqual([r[0] for r in claim(conn)], [noop])

    def test_per_type_lease(self):
        """Each type's lease applies to its jobs."""
        conn = self.connect()
        a = insert_job(conn, "noop", scheduled_start=T0)
        b = insert_job(conn, "sleep", scheduled_start=T0, data={"seconds": 1})
        claim(conn, types=("noop", "sleep"), leases=[10.0, 20.0])
        self.assertEqual(job_row(conn, a)["lease_expires"],
                         T0 + timedelta(seconds=10))
        self.assertEqual(job_row(conn, b)["lease_expires"],
                         T0 + timedelta(seconds=20))

    def test_prerequisite_must_complete(self):
        """A job waits until its prerequisite COMPLETED."""
        conn = self.connect()
        first = insert_job(conn, "sleep", scheduled_start=T0,
                           data={"seconds": 1})
        second = insert_job(conn, scheduled_start=T0, prerequisite=first)
        self.assertEqual(claim(conn), [])
        run(conn, "UPDATE job SET status = 2 WHERE id = %(id)s RETURNING id",
            id=first)
        self.assertEqual([r[0] for r in claim(conn)], [second])

    def test_skip_locked(self):
        """A claim in an open transaction does not block another runner's:
        the second skips the locked rows and takes the next ones."""
        one, two = self.connect(), self.connect()
        a = insert_job(one, scheduled_start=T0)
        b = insert_job(one, scheduled_start=T0)
        first = claim(one, limit=1, commit=False)
        with two.cursor() as cur:
            cur.execute("SET lock_timeout = '2s'")
        second = claim(two, limit=5, holder="runner-b")
        one.commit()
        self.assertEqual(([r[0] for r in first], [r[0] for r in second]),
                         ([a], [b]))

    def test_claim_does_not_block_foreign_keys(self):
        """FOR NO KEY UPDATE: while a claim holds a job's row, another
        transaction may still insert rows that reference it."""
        one, two = self.connect(), self.connect()
        job_id = insert_job(one, scheduled_start=T0)
        run(one, "INSERT INTO processor (name) VALUES ('amd64')"
            " RETURNING id")
        claim(one, commit=False)
        with two.cursor() as cur:
            cur.execute("SET lock_timeout = '2s'")
            cur.execute(
                "INSERT INTO build_farm_job (job, build_type, processor)"
                " SELECT %s, 'binary', id FROM processor", (job_id,))
        two.commit()
        one.commit()

    def test_claim_uses_waiting_index(self):
        """The claim's selection walks job__waiting__idx."""
        conn = self.connect()
        run(conn, "INSERT INTO job (job_type, status, scheduled_start)"
            " SELECT CASE WHEN mod(i, 2) = 0 THEN 'noop' ELSE 'build' END,"
            " CASE WHEN mod(i, 10) = 0 THEN 0 ELSE 2 END, %(t)s"
            " FROM generate_series(1, 20000) i RETURNING id", t=T0)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("ANALYZE job")
            cur.execute("EXPLAIN " + queries.CLAIM, {
                "now": T0, "holder": HOLDER, "limit": 10,
                "types": ["noop"], "leases": [60.0]})
            plan = "\n".join(r[0] for r in cur.fetchall())
        self.assertIn("job__waiting__idx", plan)

    def test_waiting_builds_cost_the_claim_nothing(self):
        """Ten thousand waiting builds ahead of a native job are not read.

        The index leaves builds out, so the scan's first row is the native
        job: one row read, none removed by a filter.
        """
        conn = self.connect()
        run(conn, "INSERT INTO job (job_type, status, scheduled_start,"
            " priority) SELECT 'build', 0, %(t)s, 10"
            " FROM generate_series(1, 10000) RETURNING id", t=T0)
        insert_job(conn, scheduled_start=T0)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("ANALYZE job")
            cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + queries.CLAIM, {
                "now": T0, "holder": HOLDER, "limit": 10,
                "types": ["noop"], "leases": [60.0]})
            plan = cur.fetchone()[0][0]["Plan"]
        scans = list(_index_scans(plan, "job__waiting__idx"))
        self.assertEqual(len(scans), 1, plan)
        self.assertEqual(scans[0]["Actual Rows"], 1)
        self.assertEqual(scans[0].get("Rows Removed by Filter", 0), 0)


def _index_scans(node, index):
    """Every plan node scanning ``index``."""
    if node.get("Index Name") == index:
        yield node
    for child in node.get("Plans", ()):
        yield from _index_scans(child, index)


class OutcomeTests(DatabaseTestMixin, TestCase):
    """Batched, guarded outcome writes."""

    def claimed(self, conn, n=1, holder=HOLDER):
        for _ in range(n):
            insert_job(conn, scheduled_start=T0, max_retries=2)
        return [r[0] for r in claim(conn, limit=n, holder=holder)]

    def test_complete_many_in_one_statement(self):
        """COMPLETE finishes every listed job this runner holds."""
        conn = self.connect()
        ids = self.claimed(conn, 3)
        done = run(conn, queries.COMPLETE, ids=ids, now=T0, holder=HOLDER)
        self.assertEqual(sorted(r[0] for r in done), sorted(ids))
        for job_id in ids:
            row = job_row(conn, job_id)
            self.assertEqual((row["status"], row["lease_holder"],
                              row["date_finished"]),
                             (JobStatus.COMPLETED, None, T0))

    def test_complete_and_claim_in_one_statement(self):
        """COMPLETE_AND_CLAIM completes the finished jobs and claims new
        ones in one statement, telling the two apart."""
        conn = self.connect()
        finished = self.claimed(conn, 2)
        fresh = insert_job(conn, scheduled_start=T0)
        rows = run(conn, queries.COMPLETE_AND_CLAIM, ids=finished, now=T0,
                   holder=HOLDER, limit=5, types=["noop"], leases=[60.0])
        self.assertEqual(sorted((r[0], r[1]) for r in rows),
                         sorted([(False, finished[0]), (False, finished[1]),
                                 (True, fresh)]))
        self.assertEqual(job_row(conn, finished[0])["status"],
                         JobStatus.COMPLETED)
        self.assertEqual(job_row(conn, fresh)["status"], JobStatus.RUNNING)

    def test_outcomes_guarded_by_holder(self):
        """A runner cannot finish a job another runner holds."""
        conn = self.connect()
        [theirs] = self.claimed(conn, holder="runner-b")
        for sql, extra in ((queries.COMPLETE, {}),
                           (queries.HAND_BACK, {}),
                           (queries.HEARTBEAT, {"seconds": [60.0]}),
                           (queries.FAIL, {"errors": ["x"]}),
                           (queries.RETRY, {"errors": ["x"], "ats": [T0]})):
            self.assertEqual(run(conn, sql, ids=[theirs], now=T0,
                                 holder=HOLDER, **extra), [])
        self.assertEqual(job_row(conn, theirs)["status"], JobStatus.RUNNING)

    def test_outcomes_guarded_by_status(self):
        """A cancelled (FAILED) job is not completed by its old holder."""
        conn = self.connect()
        [job_id] = self.claimed(conn)
        run(conn, "UPDATE job SET status = 3, lease_holder = NULL,"
            " lease_expires = NULL WHERE id = %(id)s RETURNING id", id=job_id)
        self.assertEqual(run(conn, queries.COMPLETE, ids=[job_id], now=T0,
                             holder=HOLDER), [])
        self.assertEqual(job_row(conn, job_id)["status"], JobStatus.FAILED)

    def test_retry_and_fail(self):
        """RETRY: WAITING until the given time; FAIL: FAILED with error."""
        conn = self.connect()
        a, b = self.claimed(conn, 2)
        later = T0 + timedelta(seconds=40)
        run(conn, queries.RETRY, ids=[a], ats=[later], errors=["flaky"],
            now=T0, holder=HOLDER)
        run(conn, queries.FAIL, ids=[b], errors=["broken"], now=T0,
            holder=HOLDER)
        row_a, row_b = job_row(conn, a), job_row(conn, b)
        self.assertEqual((row_a["status"], row_a["scheduled_start"],
                          row_a["last_error"], row_a["lease_holder"]),
                         (JobStatus.WAITING, later, "flaky", None))
        self.assertEqual((row_b["status"], row_b["last_error"],
                          row_b["date_finished"]),
                         (JobStatus.FAILED, "broken", T0))

    def test_hand_back_does_not_count_the_attempt(self):
        """HAND_BACK: WAITING, lease cleared, attempt given back."""
        conn = self.connect()
        [job_id] = self.claimed(conn)
        run(conn, queries.HAND_BACK, ids=[job_id], now=T0, holder=HOLDER)
        row = job_row(conn, job_id)
        self.assertEqual((row["status"], row["attempt_count"],
                          row["lease_holder"], row["lease_expires"]),
                         (JobStatus.WAITING, 0, None, None))

    def test_heartbeat_extends_lease(self):
        """HEARTBEAT moves lease_expires to now + seconds."""
        conn = self.connect()
        [job_id] = self.claimed(conn)
        later = T0 + timedelta(seconds=50)
        run(conn, queries.HEARTBEAT, ids=[job_id], seconds=[60.0],
            now=later, holder=HOLDER)
        self.assertEqual(job_row(conn, job_id)["lease_expires"],
                         later + timedelta(seconds=60))


class MaintenanceTests(DatabaseTestMixin, TestCase):
    """Reclaiming expired leases and failing orphans."""

    def test_reclaim_expired_counts_the_attempt(self):
        """An expired lease: back to WAITING with its attempt counted, or
        FAILED when it was the last one; live leases are untouched."""
        conn = self.connect()
        retry = insert_job(conn, scheduled_start=T0, max_retries=1)
        last = insert_job(conn, scheduled_start=T0, max_retries=0)
        claim(conn, limit=2, leases=[30.0])
        live = insert_job(conn, scheduled_start=T0)
        claim(conn, limit=1, leases=[300.0], holder="runner-b")
        rows = run(conn, queries.RECLAIM_EXPIRED,
                   now=T0 + timedelta(seconds=31), types=["noop"])
        self.assertEqual(sorted(rows), sorted([
            (retry, JobStatus.WAITING, "noop"),
            (last, JobStatus.FAILED, "noop")]))
        row = job_row(conn, retry)
        self.assertEqual((row["attempt_count"], row["lease_holder"]),
                         (1, None))
        self.assertIn("lease held by runner-a expired", row["last_error"])
        self.assertIn("no attempts left", job_row(conn, last)["last_error"])
        self.assertEqual(job_row(conn, live)["status"], JobStatus.RUNNING)

    def test_orphans_fail_naming_the_prerequisite(self):
        """A WAITING job whose prerequisite FAILED fails, naming it; its
        own dependents follow on the next pass."""
        conn = self.connect()
        first = insert_job(conn, status=3, last_error="boom")
        second = insert_job(conn, prerequisite=first)
        third = insert_job(conn, prerequisite=second)
        self.assertEqual(run(conn, queries.FAIL_ORPHANS, now=T0,
                             types=["noop"]), [(second,)])
        self.assertEqual(run(conn, queries.FAIL_ORPHANS, now=T0,
                             types=["noop"]), [(third,)])
        row = job_row(conn, second)
        self.assertEqual(row["status"], JobStatus.FAILED)
        self.assertEqual(row["last_error"],
                         "prerequisite job %d failed: boom" % first)


class PreparedTests(DatabaseTestMixin, TestCase):
    """The runner's hot statements as prepared statements."""

    def test_prepared_forms_run_as_the_plain_ones(self):
        """Each prepared statement is accepted by the server and, executed
        with the plain statement's parameters, does what the plain one
        does: complete-and-claim completes and claims, complete completes."""
        conn = self.connect()
        with conn.cursor() as cur:
            for prepared in queries.PREPARED.values():
                cur.execute(prepared.prepare)
        conn.commit()
        first, second = (insert_job(conn, scheduled_start=T0)
                         for _ in range(2))
        claim_params = {"now": T0, "holder": HOLDER, "limit": 1,
                        "types": ["noop"], "leases": [60.0]}
        rows = run(conn, queries.PREPARED[queries.CLAIM].execute,
                   **claim_params)
        self.assertEqual([r[0] for r in rows], [first])
        rows = run(conn, queries.PREPARED[queries.COMPLETE_AND_CLAIM].execute,
                   ids=[first], **claim_params)
        self.assertEqual(sorted((r[0], r[1]) for r in rows),
                         [(False, first), (True, second)])
        rows = run(conn, queries.PREPARED[queries.COMPLETE].execute,
                   ids=[second], now=T0, holder=HOLDER)
        self.assertEqual(rows, [(second,)])
        self.assertEqual([job_row(conn, i)["status"] for i in (first, second)],
                         [JobStatus.COMPLETED, JobStatus.COMPLETED])

    def test_generic_plans_stay_index_driven(self):
        """Planned once for any parameters (the runner's plan_cache_mode),
        the claims still walk job__waiting__idx and find the rows to
        update by primary key; no statement reads the whole table (the
        completion may walk the small index of RUNNING jobs)."""
        conn = self.connect()
        run(conn, "INSERT INTO job (job_type, status, scheduled_start)"
            " SELECT CASE WHEN mod(i, 2) = 0 THEN 'noop' ELSE 'build' END,"
            " CASE WHEN mod(i, 10) = 0 THEN 0 ELSE 2 END, %(t)s"
            " FROM generate_series(1, 20000) i RETURNING id", t=T0)
        conn.autocommit = True
        params = {"now": T0, "holder": HOLDER, "limit": 10,
                  "types": ["noop"], "leases": [60.0], "ids": [1, 2]}
        with conn.cursor() as cur:
            cur.execute("ANALYZE job")
            cur.execute(queries.PLAN_CACHE_MODE)
            plans = {}
            for sql, prepared in queries.PREPARED.items():
                cur.execute(prepared.prepare)
                cur.execute("EXPLAIN " + prepared.execute, params)
                plans[prepared.name] = "\n".join(r[0] for r in cur.fetchall())
        for name in ("lp_job_claim", "lp_job_complete_and_claim"):
            self.assertIn("job__waiting__idx", plans[name])
            self.assertIn("job_pkey", plans[name])
        for name, plan in plans.items():
            self.assertNotIn("Seq Scan", plan, (name, plan))

    def test_parameters_are_numbered_in_order_of_appearance(self):
        """A statement's named parameters become $1, $2, ... in the order
        they first appear, with their declared types; EXECUTE passes them
        by name in that order."""
        prepared = queries.prepared_statement(
            "t", "SELECT %(ids)s, %(now)s, %(ids)s")
        self.assertEqual(prepared.prepare,
                         "PREPARE t (bigint[], timestamptz) AS"
                         " SELECT $1, $2, $1")
        self.assertEqual(prepared.execute, "EXECUTE t (%(ids)s, %(now)s)")
