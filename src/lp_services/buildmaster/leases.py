"""Several buildmasters on one database: registration, builder leases and
the fence.

Each master has a ``buildmaster`` row (its ``--identity``) whose heartbeat
it renews every :attr:`FarmConfig.lease_renewal` seconds, together with
the leases of the builders it holds. The live masters (heartbeat newer
than one builder lease) share the active builders by a rule every master
computes the same way: builders by name, masters by name, builder *i* to
master *i mod m*. So shares differ by one builder at most, and when a
master joins or leaves each master lets go of what is no longer its own
and takes what is (free, or its lease expired). A master that stops
cleanly removes its row and frees its builders at once; one that dies or
stalls loses them when their leases expire, after at most one lease plus
one renewal interval (40 s by default).

The fence (:func:`hold`): every transaction in which a master changes
anything about a builder or its build first locks the builder's row
``FOR SHARE`` on the condition that the master still holds an unexpired
lease on it. If it does not, :class:`LeaseLost` is raised and the
transaction changes nothing. While the row is locked, no other master
can take the builder (taking skips locked rows rather than waiting), so a
lease cannot change hands in the middle of a write. A master that was
paused past its leases and resumes finds every such write refused and
lets those builders go.

Masters' clocks must agree (NTP), as the job runners' must: leases are
written and compared with the caller's clock.
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta

from twisted.logger import Logger

from lp_services.buildmaster import queries as BQ

__all__ = ["LeaseKeeper", "LeaseLost", "assign", "hold"]


class LeaseLost(Exception):
    """This master no longer holds the builder's lease: it must not change
    anything about the builder or its build."""

    def __init__(self, builder: str):
        super().__init__("lease of %s lost" % builder)
        self.builder = builder


def hold(cursor, builder_id: int, builder_name: str, master: str, now):
    """The fence: lock builder ``builder_id`` for the rest of the
    transaction if ``master`` holds its lease at ``now``.

    :raises LeaseLost: it does not.
    """
    cursor.execute(BQ.HOLD_BUILDER, {"id": builder_id, "name": master,
                                     "now": now})
    if cursor.fetchone() is None:
        raise LeaseLost(builder_name)


def assign(builder_ids: list[int], masters: list[str]) -> dict[int, str]:
    """Builder id -> master: the i-th builder (in the given order) to the
    (i mod m)-th master (by name), so that shares differ by one at most."""
    masters = sorted(masters)
    if not masters:
        return {}
    return {b: masters[i % len(masters)] for i, b in enumerate(builder_ids)}


class LeaseKeeper:
    """One master's registration and leases; :meth:`tick` renews them and
    rebalances, :meth:`stop` hands everything back."""

    log = Logger()

    def __init__(self, farm, host: str | None = None, pid: int | None = None):
        self.farm = farm
        self.name = farm.config.identity
        self.host = host or socket.gethostname()
        self.pid = os.getpid() if pid is None else pid
        #: Builder ids this master held at the end of the last tick.
        self.held: set[int] = set()
        self.registered = False

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.farm.config.builder_lease)

    def tick(self):
        """Register or renew the heartbeat, renew held leases, let go of
        builders now another master's, take those now ours; fire with the
        set of builder ids held."""
        from lp_services.buildmaster.farm import transaction

        now = self.farm.now()
        d = self.farm.transactor.run(transaction(self._tick, now))

        def done(result):
            held, lost = result
            for name in lost:
                self.log.warn("{master}: lost the lease of {builder}; "
                              "letting it go", master=self.name,
                              builder=name)
            self.held = held
            self.registered = True
            return held
        return d.addCallback(done)

    def _tick(self, cursor, now):
        params = {"name": self.name, "now": now}
        cursor.execute(BQ.HEARTBEAT, params)
        if cursor.fetchone() is None:
            cursor.execute(BQ.REGISTER_MASTER, dict(
                params, host=self.host[:200], pid=self.pid))
        cursor.execute(BQ.LIVE_MASTERS, {"since": now - self.lease})
        live = [row[0] for row in cursor.fetchall()]
        if self.name not in live:
            live.append(self.name)
        cursor.execute(BQ.BUILDER_LEASES)
        rows = cursor.fetchall()
        names = {bid: name for bid, name, _, _ in rows}
        mine = {bid for bid, master in assign([r[0] for r in rows],
                                              live).items()
                if master == self.name}
        owned = {bid for bid, _, owner, expires in rows
                 if owner == self.name}
        valid = {bid for bid, _, owner, expires in rows
                 if owner == self.name and expires is not None
                 and expires > now}
        until = now + self.lease
        cursor.execute(BQ.RENEW_LEASES, dict(
            params, ids=sorted(valid & mine), until=until))
        held = {row[0] for row in cursor.fetchall()}
        let_go = sorted(owned - held)
        if let_go:
            cursor.execute(BQ.RELEASE_BUILDERS, dict(params, ids=let_go))
        wanted = sorted(mine - held)
        if wanted:
            cursor.execute(BQ.TAKE_BUILDERS, dict(
                params, ids=wanted, until=until))
            held |= {row[0] for row in cursor.fetchall()}
        # Builders held at the last tick whose lease lapsed meanwhile (this
        # master stalled, or could not reach the database): said once.
        lost = sorted(names[b] for b in self.held - valid if b in names)
        return held, lost

    def stop(self):
        """Hand every builder back and remove the registration."""
        from lp_services.buildmaster.farm import transaction

        def run(cursor):
            cursor.execute(BQ.DEREGISTER_MASTER, {"name": self.name})
        self.held = set()
        return self.farm.transactor.run(transaction(run))
