"""Builds that end other than by collection: a build the builder no longer
runs (lost) and a build an operator cancelled."""

from datetime import timedelta

from lp_services.buildmaster import builders as B
from lp_services.buildmaster import collect as C
from lp_services.buildmaster import queue as Q
from lp_services.buildmaster.enums import BuilderCleanStatus, BuildStatus
from lp_services.protocol import states as wire

__all__ = ["reset_lost_build", "scan_cancelling"]


async def reset_lost_build(scanner, v, agent, status):
    build = v.build
    now = scanner.farm.now()
    scanner.log.warn("{name}: build {job} lost (agent: {state} {id})",
                     name=scanner.name, job=build.job_id, state=status.state.short,
                     id=status.build_id)

    def handle(cursor):
        if build.status == BuildStatus.CANCELLING:
            Q.finish_build(cursor, build.job_id, build.cookie, now,
                           BuildStatus.CANCELLED,
                           last_error="cancelled (lost on the builder)")
        else:
            Q.reset_build(cursor, build.job_id, build.cookie, now,
                          "build lost: agent reports %s %s"
                          % (status.state.short, status.build_id or ""))
        B.set_clean_status(cursor, v.id, BuilderCleanStatus.DIRTY, now)
    await scanner.commit(handle)
    if status.state == wire.BuilderStatus.BUILDING:
        await agent.abort()
    elif status.state == wire.BuilderStatus.WAITING:
        await C.clean_agent(scanner, agent)


async def scan_cancelling(scanner, v, agent, status):
    """A CANCELLING build: CANCELLED once the agent has aborted it (it
    reports WAITING), else ask it to abort and wait until the build's
    stored cancel deadline; past it the build is forced CANCELLED and the
    builder is dirty. The deadline lives in the database
    (``build_queue.cancel_deadline``), so a restarted master keeps it."""
    build = v.build
    now = scanner.farm.now()
    if status.state == wire.BuilderStatus.WAITING:
        await scanner.commit(Q.finish_build, build.job_id, build.cookie,
                             now, BuildStatus.CANCELLED,
                             last_error="cancelled")
        scanner.log.info("{name}: build {job} cancelled", name=scanner.name,
                         job=build.job_id)
        await C.clean_agent(scanner, agent)
        return
    if build.cancel_deadline is None:
        deadline = now + timedelta(
            seconds=scanner.farm.config.cancel_timeout)
        await scanner.commit(Q.set_cancel_deadline, build.job_id,
                             build.cookie, deadline)
        if status.state == wire.BuilderStatus.BUILDING:
            await agent.abort()
        return
    if now < build.cancel_deadline:
        return
    scanner.log.warn("{name}: build {job} did not abort by {deadline}; "
                     "forcing CANCELLED", name=scanner.name,
                     job=build.job_id,
                     deadline=build.cancel_deadline.isoformat())

    def force(cursor):
        Q.finish_build(cursor, build.job_id, build.cookie, now,
                       BuildStatus.CANCELLED,
                       last_error="cancelled (abort timed out)")
        B.set_clean_status(cursor, v.id, BuilderCleanStatus.DIRTY, now)
    await scanner.commit(force)
