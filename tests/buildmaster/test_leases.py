"""Several buildmasters on one database (lp_services.buildmaster.leases):
registration, lease grant, renewal and expiry, an even spread, rebalancing
when a master joins or leaves, takeover, and the fence on every write
path. Real PostgreSQL; every master on one task.Clock."""

from datetime import timedelta

from twisted.internet import defer

from lp_services.buildmaster import builders as B
from lp_services.buildmaster import queue as Q
from lp_services.buildmaster.agentclient import AgentError
from lp_services.buildmaster.farm import Farm, FarmConfig
from lp_services.buildmaster.leases import LeaseKeeper, LeaseLost, assign
from lp_services.buildmaster.service import BuilderManager
from lp_services.protocol.states import BuilderStatus
from lp_services.testing.fakeagents import BuildingAgent, IdleAgent
from tests.buildmaster.test_manager import ScannerTestBase


class AssignTests(ScannerTestBase):
    """The rule every master computes the same way."""

    def test_round_robin_by_name(self):
        """Builder i to master i mod m (masters by name): shares differ by
        one at most, and every master computes the same answer."""
        table = assign(list(range(1, 8)), ["c", "a", "b"])
        self.assertEqual(table, {1: "a", 2: "b", 3: "c", 4: "a", 5: "b",
                                 6: "c", 7: "a"})
        self.assertEqual(assign([1, 2], []), {})


class KeeperTestBase(ScannerTestBase):

    def keeper(self, name):
        farm = Farm(self.sync, self.clock, self.file_store,
                    FarmConfig(identity=name, files_url="http://m:8220"),
                    agent_factory=lambda v: self.agents[v.name])
        return LeaseKeeper(farm, host="host-" + name, pid=1)

    def tick(self, *keepers):
        for keeper in keepers:
            self.successResultOf(keeper.tick())
        self.assertDisjoint(*keepers)

    def assertDisjoint(self, *keepers):
        keepers = list({id(k): k for k in keepers}.values())
        for i, a in enumerate(keepers):
            for b in keepers[i + 1:]:
                self.assertEqual(a.held & b.held, set(),
                                 "%s and %s both hold a builder"
                                 % (a.name, b.name))

    def owners(self):
        return dict(self.query("SELECT name, owner FROM builder"))

    def builders(self, n):
        return [self.add_builder("b%02d" % i, lease=False)
                for i in range(n)]


class LeaseTests(KeeperTestBase):

    def test_one_master_takes_every_builder(self):
        """Alone, a master registers and takes every active builder for
        one lease; a renewal extends the lease."""
        ids = self.builders(4)
        a = self.keeper("a")
        self.tick(a)
        self.assertEqual(a.held, set(ids))
        rows = self.query("SELECT name, host, pid FROM buildmaster")
        self.assertEqual(rows, [("a", "host-a", 1)])
        lease = timedelta(seconds=a.farm.config.builder_lease)
        expires = {r[0] for r in self.query(
            "SELECT lease_expires FROM builder")}
        self.assertEqual(expires, {self.now() + lease})
        self.clock.advance(10)
        self.tick(a)
        expires = {r[0] for r in self.query(
            "SELECT lease_expires FROM builder")}
        self.assertEqual(expires, {self.now() + lease})

    def test_even_spread(self):
        """Three masters over seven builders: 3, 2, 2, disjoint, every
        builder held."""
        ids = self.builders(7)
        keepers = [self.keeper(n) for n in ("a", "b", "c")]
        self.tick(*keepers)
        self.tick(*keepers)
        self.assertEqual(sorted(len(k.held) for k in keepers), [2, 2, 3])
        self.assertEqual(set().union(*(k.held for k in keepers)), set(ids))

    def test_join_moves_builders_without_overlap(self):
        """A second master joins: the first lets go of the second's share
        at its next renewal, the second takes it at its own; at no point
        do both hold one builder."""
        ids = self.builders(6)
        a, b = self.keeper("a"), self.keeper("b")
        self.tick(a)
        self.assertEqual(len(a.held), 6)
        self.tick(b)
        self.assertEqual(b.held, set())  # all of a's leases still hold
        self.clock.advance(10)
        self.tick(a, b)
        self.assertEqual((len(a.held), len(b.held)), (3, 3))
        self.assertEqual(a.held | b.held, set(ids))

    def test_clean_stop_hands_back_at_once(self):
        """A master that stops removes its registration and frees its
        builders: the other takes them at its next renewal, without
        waiting for leases to expire."""
        ids = self.builders(4)
        a, b = self.keeper("a"), self.keeper("b")
        self.tick(a, b, a, b)
        self.successResultOf(a.stop())
        self.assertEqual(set(self.owners().values()), {"b", None})
        self.tick(b)
        self.assertEqual(b.held, set(ids))
        self.assertEqual([r[0] for r in self.query(
            "SELECT name FROM buildmaster")], ["b"])

    def test_dead_master_taken_over_within_45_seconds(self):
        """A master that dies (no more renewals): its builders go to the
        other once their leases expire; with the defaults (30 s lease,
        10 s renewal) that is within 45 s of its last renewal."""
        ids = self.builders(4)
        a, b = self.keeper("a"), self.keeper("b")
        self.tick(a, b, a, b)
        died = self.clock.seconds()
        taken_at = None
        for _ in range(10):
            self.clock.advance(b.farm.config.lease_renewal)
            self.tick(b)
            if b.held == set(ids):
                taken_at = self.clock.seconds() - died
                break
        self.assertIsNotNone(taken_at)
        self.assertLessEqual(taken_at, 45)

    def test_each_take_is_a_new_epoch(self):
        """Taking a builder bumps its lease epoch (what the agent fences
        on); renewing does not; the farm hands the epoch to the agent
        client with the vitals."""
        self.builders(1)
        a, b = self.keeper("a"), self.keeper("b")
        self.tick(a)
        epoch = lambda: self.query("SELECT lease_epoch FROM builder")[0][0]
        self.assertEqual(epoch(), 1)
        self.clock.advance(10)
        self.tick(a)
        self.assertEqual(epoch(), 1)
        self.clock.advance(31)
        self.tick(b)
        self.assertEqual(epoch(), 2)
        leases = []

        class Client:
            def set_lease(self, master, epoch):
                leases.append((master, epoch))
        self.agents["b00"] = Client()
        vitals = self.sql(B.load_vitals, "b00")[0]
        b.farm.agent_for(vitals)
        self.assertEqual(leases, [("b", 2)])

    def test_stalled_master_resumes_and_lets_go(self):
        """A master paused past its leases: the other takes its builders;
        when it runs again its renewal finds them lost, says so once, and
        no longer holds them."""
        self.builders(2)
        a, b = self.keeper("a"), self.keeper("b")
        self.tick(a, b, a, b)
        lost = set(a.held)
        self.assertTrue(lost)
        self.clock.advance(31)
        self.tick(b)          # a's heartbeat is stale: b takes everything
        self.assertEqual(len(b.held), 2)
        events = []
        from twisted.logger import globalLogPublisher
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.successResultOf(a.tick())
        self.assertEqual(a.held & b.held, set())
        said = [e for e in events if "lost the lease" in
                e.get("log_format", "")]
        self.assertEqual(len(said), len(lost))


class FenceTests(ScannerTestBase):
    """A master that lost a builder's lease changes nothing about it or
    its build, on every write path, and blames nobody."""

    def take_away(self, name="b1"):
        """Another master takes the builder (as after an expired lease)."""
        builder_id = self.sql(B.load_vitals, name)[0].id
        self.lease_builder(builder_id, master="other-master")

    def snapshot(self, job=None):
        state = [self.query("SELECT failure_count, clean_status, owner"
                            " FROM builder ORDER BY id")]
        if job is not None:
            state.append(self.build_row(job))
        return state

    def assertFenced(self, scanner, agent, job=None, calls_allowed=()):
        lost = []
        scanner.on_lease_lost = lost.append
        before = self.snapshot(job)
        calls = len(agent.model.calls)
        self.scan(scanner)
        self.assertEqual(self.snapshot(job), before)
        made = [c[0] for c in agent.model.calls[calls:]]
        self.assertEqual([c for c in made if c not in calls_allowed], [])
        self.assertEqual(lost, [scanner])

    def test_dispatch(self):
        """An idle builder another master holds gets no build: no claim,
        no ensurepresent or build call."""
        agent = IdleAgent()
        self.add_builder(agent=agent)
        self.add_chroot()
        scanner = self.scanner()
        self.scan(scanner)   # info() read while still held
        job = self.request()
        self.take_away()
        self.successResultOf(scanner.reload())
        self.assertFenced(scanner, agent, job, calls_allowed=("status",))
        self.assertEqual(self.build_row(job)["job_status"], "WAITING")

    def test_collect(self):
        """A finished build is neither gathered nor stored; the agent is
        not cleaned."""
        agent, scanner, job = self.dispatched()
        agent.model.finish("OK", files={"r.deb": b"r"})
        self.take_away()
        self.assertFenced(scanner, agent, job, calls_allowed=("status",))
        self.assertEqual(agent.model.state, BuilderStatus.WAITING)

    def test_cancel(self):
        """A CANCELLING build: no deadline stored, no abort sent."""
        agent, scanner, job = self.dispatched()
        self.sql(Q.cancel_build, job, self.now())
        self.successResultOf(scanner.reload())
        self.take_away()
        self.assertFenced(scanner, agent, job, calls_allowed=("status",))
        self.assertIsNone(self.sql(B.load_vitals, "b1")[0].build
                          .cancel_deadline)

    def test_reset_of_a_lost_build(self):
        """An agent running another build: the build is not reset and the
        agent's build is not aborted."""
        agent, scanner, job = self.dispatched()
        agent.model.build_id = "someone-elses"
        self.take_away()
        self.assertFenced(scanner, agent, job, calls_allowed=("status",))

    def test_leftover_cleanup(self):
        """A busy agent with no build of ours: not aborted."""
        agent = BuildingAgent(build_id="stray")
        self.add_builder(agent=agent)
        scanner = self.scanner()
        self.take_away()
        self.assertFenced(scanner, agent, calls_allowed=("status",))
        self.assertEqual(agent.model.state, BuilderStatus.BUILDING)

    def test_failure_blame(self):
        """An agent that fails its status(): no failure counted on the
        builder or the build."""
        agent, scanner, job = self.dispatched()
        self.take_away()
        agent.status = lambda: defer.fail(AgentError("unreachable"))
        lost = []
        scanner.on_lease_lost = lost.append
        before = self.snapshot(job)
        # Failures are judged at the fifth consecutive one.
        for _ in range(5):
            self.scan(scanner)
        self.assertEqual(self.snapshot(job), before)
        self.assertEqual(lost, [scanner])

    def test_logtails(self):
        """Logtails buffered for a builder now another master's are not
        written, nor is the build's lease renewed."""
        agent, scanner, job = self.dispatched()
        self.take_away()
        self.farm.logtails.put(job, self.build_row(job)["cookie"], "tail\n")
        before = self.build_row(job)
        self.successResultOf(self.farm.logtails.flush())
        after = self.build_row(job)
        self.assertEqual((after["logtail"], after["lease_expires"]),
                         (before["logtail"], before["lease_expires"]))

    def test_commit_raises_lease_lost(self):
        """Any change through a scanner of a builder it does not hold
        raises LeaseLost and is rolled back."""
        agent, scanner, job = self.dispatched()
        self.take_away()
        failure = self.failureResultOf(scanner.commit(
            B.set_clean_status, scanner.vitals.id, 1, self.now()))
        failure.trap(LeaseLost)


class ManagerLeaseTests(KeeperTestBase):
    """The service keeps scanners only for the builders its master
    holds."""

    def test_scanners_follow_the_leases(self):
        """Two managers over four builders: each scans its two; when one
        stops, the other takes all four at its next renewal."""
        self.builders(4)
        for n in range(4):
            self.agents["b%02d" % n] = IdleAgent()
        managers = []
        for name in ("m1", "m2"):
            farm = Farm(self.sync, self.clock, self.file_store,
                        FarmConfig(identity=name, files_url="http://m:8220"),
                        agent_factory=lambda v: self.agents[v.name],
                        run_command=self.run_command)
            managers.append(BuilderManager(farm))
        m1, m2 = managers
        m1.startService()
        m2.startService()
        self.clock.advance(0)
        self.clock.advance(m1.farm.config.lease_renewal)
        self.assertEqual(sorted(len(m.scanners) for m in managers), [2, 2])
        self.assertEqual(set(m1.scanners) & set(m2.scanners), set())
        self.successResultOf(m1.stopService())
        self.clock.advance(m2.farm.config.lease_renewal)
        self.assertEqual(len(m2.scanners), 4)
        self.successResultOf(m2.stopService())
        self.assertEqual(self.query("SELECT count(*) FROM buildmaster"),
                         [(0,)])


class OpsTests(KeeperTestBase):
    """Who holds what, for operators: ops_masters (report masters), the
    master column of ops_builders and builder list."""

    def test_masters_report_and_builder_owner(self):
        """Two masters over three builders, one build running: each row
        says its builders and builds; builder list names the master."""
        from lp_services.ops.reports import fetch_report

        self.builders(3)
        a, b = self.keeper("a"), self.keeper("b")
        # The view reads the database's clock: lease from the present.
        self.clock.advance(float(self.query(
            "SELECT extract(epoch FROM now())")[0][0]) - self.clock.seconds())
        self.tick(a, b, a, b)
        conn = self.connect()
        with conn.cursor() as cur:
            _, rows = fetch_report(cur, "masters")
        self.assertEqual([(r["master"], r["host"], r["builders_owned"],
                           r["builds_running"]) for r in rows],
                         [("a", "host-a", 2, 0), ("b", "host-b", 1, 0)])
        listed = {r["name"]: r["master"] for r in self.sql(
            B.list_builders, self.now())}
        self.assertEqual(sorted(listed.values()), ["a", "a", "b"])
        with conn.cursor() as cur:
            cur.execute("SELECT name, master FROM ops_builders")
            self.assertEqual(dict(cur.fetchall()), listed)
