"""Tests of the worker pool with real child processes."""

from twisted.internet import defer, reactor, task
from twisted.trial.unittest import TestCase

from lp_services.job.pool import WorkerPool, encode_request

from tests.job.support import TEST_MODULES, wait_for


def request(job_type, data=None, job_id=1):
    return {"job": job_id, "type": job_type, "data": data or {},
            "attempt": 1, "holder": "h", "now": 1.7e9}


class PoolTests(TestCase):
    """Children run jobs; misbehaving children are replaced."""

    timeout = 60

    @defer.inlineCallbacks
    def make_pool(self, size=1, depth=1):
        self.clock = task.Clock()
        pool = WorkerPool(size, TEST_MODULES, clock=self.clock,
                          reactor=reactor, depth=depth)
        self.addCleanup(pool.stop)
        yield pool.start()
        return pool

    @defer.inlineCallbacks
    def test_long_lived_children(self):
        """One child runs many jobs, in its own process."""
        pool = yield self.make_pool()
        worker = pool.take()
        pids = set()
        for n in range(5):
            reply = yield worker.run(request("noop", job_id=n), 10)
            self.assertEqual(reply["outcome"], "completed")
            pids.add(worker.pid)
        self.assertEqual(len(pids), 1)

    @defer.inlineCallbacks
    def test_os_exit_is_a_crash_and_the_child_is_replaced(self):
        """A job calling os._exit ends 'crashed'; a new child takes over."""
        pool = yield self.make_pool()
        worker = pool.take()
        reply = yield worker.run(request("test.crash"), 10)
        self.assertEqual(reply["outcome"], "crashed")
        self.assertIn("exit status 7", reply["message"])
        yield wait_for(lambda: pool.idle_count == 1, what="a replacement")
        replacement = pool.take()
        self.assertNotEqual(replacement.pid, worker.pid)
        reply = yield replacement.run(request("noop"), 10)
        self.assertEqual(reply["outcome"], "completed")

    @defer.inlineCallbacks
    def test_timeout_kills_the_child(self):
        """When the (controlled) clock passes the timeout the child is
        killed and the job ends 'timeout'."""
        pool = yield self.make_pool()
        worker = pool.take()
        d = worker.run(request("test.hang"), 2.0)
        self.clock.advance(1.9)
        self.assertNoResult(d)
        self.clock.advance(0.2)
        reply = yield d
        self.assertEqual(reply["outcome"], "timeout")
        yield wait_for(lambda: pool.idle_count == 1, what="a replacement")

    @defer.inlineCallbacks
    def test_memory_limit(self):
        """A job exceeding its type's RLIMIT_AS fails 'memory' and its
        child is replaced; the same child could allocate it unlimited."""
        pool = yield self.make_pool()
        worker = pool.take()
        reply = yield worker.run(request("test.hog", {"mib": 512}), 30)
        self.assertEqual(reply["outcome"], "memory")
        self.assertIn("memory limit", reply["message"])
        self.assertEqual(worker.free, 0)
        small = yield wait_for(pool.take, what="a replacement")
        self.assertNotEqual(small.pid, worker.pid)
        reply = yield small.run(request("test.hog", {"mib": 16}), 30)
        self.assertEqual(reply["outcome"], "completed")

    @defer.inlineCallbacks
    def test_memory_limit_follows_the_job_type(self):
        """One child, three jobs: a limited type's small allocation
        succeeds, an unlimited type's large one after it succeeds too (the
        limit is lifted for it), and the limited type's large one fails."""
        pool = yield self.make_pool()
        worker = pool.take()
        outcomes = []
        for job_type, mib in (("test.hog", 16), ("test.alloc", 512),
                              ("test.hog", 512)):
            reply = yield worker.run(request(job_type, {"mib": mib}), 30)
            outcomes.append(reply["outcome"])
        self.assertEqual(outcomes, ["completed", "completed", "memory"])

    @defer.inlineCallbacks
    def test_jobs_sent_ahead_are_not_started_when_a_child_dies(self):
        """With depth > 1, jobs queued behind a crashing one end
        'not_started' so the runner can hand them back."""
        pool = yield self.make_pool(depth=3)
        worker = pool.take()
        crashed = worker.run(request("test.crash", job_id=1), 10)
        queued = [worker.run(request("noop", job_id=n), 10) for n in (2, 3)]
        self.assertEqual(worker.free, 0)
        replies = yield defer.gatherResults([crashed] + queued)
        self.assertEqual([r["outcome"] for r in replies],
                         ["crashed", "not_started", "not_started"])

    @defer.inlineCallbacks
    def test_kill_for_another_job_hands_the_head_back(self):
        """Cancelling a queued job kills the child; the job it was running
        is handed back, not failed."""
        pool = yield self.make_pool(depth=2)
        worker = pool.take()
        head = worker.run(request("test.hang", job_id=1), 60)
        behind = worker.run(request("noop", job_id=2), 60)
        worker.kill("cancelled", "lost", job_id=2)
        replies = yield defer.gatherResults([head, behind])
        self.assertEqual([r["outcome"] for r in replies],
                         ["handed_back", "not_started"])


class BatchTests(TestCase):
    """Several jobs sent to a child in one write."""

    timeout = 60

    @defer.inlineCallbacks
    def make_worker(self, depth=4):
        self.clock = task.Clock()
        pool = WorkerPool(1, TEST_MODULES, clock=self.clock,
                          reactor=reactor, depth=depth)
        self.addCleanup(pool.stop)
        yield pool.start()
        return pool.take()

    def send(self, worker, jobs):
        """Send (job id, type, timeout) triples in one write; return a
        Deferred firing with every reply, in order."""
        replies = []
        done = defer.Deferred()

        def replied(reply):
            replies.append(reply)
            if len(replies) == len(jobs):
                done.callback(replies)

        worker.send([(job_id, encode_request(request(job_type,
                                                     job_id=job_id)),
                      timeout) for job_id, job_type, timeout in jobs],
                    replied)
        return done

    @defer.inlineCallbacks
    def test_one_write_many_replies_in_order(self):
        """Three jobs in one write: three replies, in the order sent, each
        naming its job."""
        worker = yield self.make_worker()
        replies = yield self.send(worker, [(n, "noop", 10) for n in (7, 8, 9)])
        self.assertEqual([(r["job"], r["outcome"]) for r in replies],
                         [(7, "completed"), (8, "completed"),
                          (9, "completed")])

    @defer.inlineCallbacks
    def test_timeout_of_one_job_spares_its_neighbours(self):
        """In a batch [noop, hang, noop] only the hanging job times out:
        the one before it completed, the one after it was not started
        (so the runner hands it back, uncounted)."""
        worker = yield self.make_worker()
        d = self.send(worker, [(1, "noop", 2.0), (2, "test.hang", 2.0),
                               (3, "noop", 2.0)])
        yield wait_for(lambda: worker.job_id == 2, what="the hang to start")
        self.clock.advance(1.9)
        self.assertNoResult(d)
        self.clock.advance(0.2)
        replies = yield d
        self.assertEqual([r["outcome"] for r in replies],
                         ["completed", "timeout", "not_started"])

    @defer.inlineCallbacks
    def test_a_shorter_timeout_behind_a_longer_one(self):
        """A head with a shorter timeout than its predecessor's is killed
        at its own deadline, not the predecessor's."""
        worker = yield self.make_worker()
        d = self.send(worker, [(1, "noop", 60.0), (2, "test.hang", 2.0)])
        yield wait_for(lambda: worker.job_id == 2, what="the hang to start")
        self.clock.advance(2.1)
        replies = yield d
        self.assertEqual([r["outcome"] for r in replies],
                         ["completed", "timeout"])

    @defer.inlineCallbacks
    def test_a_longer_timeout_behind_a_shorter_one(self):
        """A head with a longer timeout than its predecessor's is not
        killed at the predecessor's deadline, only at its own."""
        worker = yield self.make_worker()
        d = self.send(worker, [(1, "noop", 1.0), (2, "test.hang", 3.0)])
        yield wait_for(lambda: worker.job_id == 2, what="the hang to start")
        self.clock.advance(1.5)
        self.assertNoResult(d)
        self.clock.advance(1.4)
        self.assertNoResult(d)
        self.clock.advance(0.2)
        replies = yield d
        self.assertEqual([r["outcome"] for r in replies],
                         ["completed", "timeout"])

    @defer.inlineCallbacks
    def test_a_child_dying_mid_batch(self):
        """A child that dies on the second of four jobs: the first
        completed, the second crashed, the last two were never started."""
        worker = yield self.make_worker()
        replies = yield self.send(worker, [
            (1, "noop", 10), (2, "test.crash", 10), (3, "noop", 10),
            (4, "noop", 10)])
        self.assertEqual([r["outcome"] for r in replies],
                         ["completed", "crashed", "not_started",
                          "not_started"])
