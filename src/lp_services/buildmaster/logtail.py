"""The logtail buffer: BUILDING builds' logtails and lease renewals,
written for all builders in one statement per flush."""

from twisted.internet import defer
from twisted.logger import Logger

from lp_services.buildmaster import queries as BQ

__all__ = ["LogtailBuffer"]


class LogtailBuffer:
    """Collects BUILDING builds' logtails and writes them, and renews
    their leases, in one statement per flush.

    A build whose logtail has not changed is written again only when its
    lease is a quarter spent, so a farm of quiet builds costs few row
    updates.
    """

    log = Logger()

    def __init__(self, farm):
        self.farm = farm
        self._pending = {}
        self._written = {}   # job -> (cookie, logtail, clock seconds)
        self.flushes = 0

    def put(self, job_id: int, cookie: str, logtail: str | None) -> None:
        logtail = (logtail or "").replace("\x00", "")
        now = self.farm.clock.seconds()
        written = self._written.get(job_id)
        renew_after = self.farm.config.lease.total_seconds() / 4
        if (written is not None and written[:2] == (cookie, logtail)
                and now - written[2] < renew_after):
            return
        self._pending[job_id] = (cookie, logtail)

    def __len__(self):
        return len(self._pending)

    def flush(self):
        """Write what was buffered; fire when committed."""
        if not self._pending:
            return defer.succeed(0)
        batch, self._pending = self._pending, {}
        config = self.farm.config
        seconds = self.farm.clock.seconds()
        for job_id, (cookie, logtail) in batch.items():
            self._written[job_id] = (cookie, logtail, seconds)
        stale = seconds - config.lease.total_seconds()
        for job_id in [j for j, w in self._written.items() if w[2] < stale]:
            del self._written[job_id]
        now = self.farm.now()
        lease_expires = now + config.lease
        jobs = list(batch)

        def write(cursor):
            cursor.execute(BQ.WRITE_LOGTAILS, {
                "jobs": jobs, "cookies": [batch[j][0] for j in jobs],
                "tails": [batch[j][1] for j in jobs], "lease": lease_expires,
                "holder": config.identity, "now": now})
            return cursor.rowcount
        self.flushes += 1
        from lp_services.buildmaster.farm import transaction

        return self.farm.transactor.run(transaction(write))
