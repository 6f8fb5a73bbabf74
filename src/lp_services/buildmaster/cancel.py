"""Builds that end other than by collection: a build the builder no longer
runs (lost) and a build an operator cancelled."""

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
    scanner.cancel_deadline = None
    if status.state == wire.BuilderStatus.BUILDING:
        await agent.abort()
    elif status.state == wire.BuilderStatus.WAITING:
        await C.clean_agent(scanner, agent)


async def scan_cancelling(scanner, v, agent, status):
    build = v.build
    seconds = scanner.farm.clock.seconds()
    if status.state == wire.BuilderStatus.WAITING:
        await scanner.commit(Q.finish_build, build.job_id, build.cookie,
                             scanner.farm.now(), BuildStatus.CANCELLED,
                             last_error="cancelled")
        scanner.cancel_deadline = None
        scanner.log.info("{name}: build {job} cancelled", name=scanner.name,
                         job=build.job_id)
        await C.clean_agent(scanner, agent)
        return
    if scanner.cancel_deadline is None:
        scanner.cancel_deadline = seconds + scanner.farm.config.cancel_timeout
        if status.state == wire.BuilderStatus.BUILDING:
            await agent.abort()
        return
    if seconds < scanner.cancel_deadline:
        return
    scanner.log.warn("{name}: build {job} did not abort in time; "
                     "forcing CANCELLED", name=scanner.name, job=build.job_id)
    now = scanner.farm.now()

    def force(cursor):
        Q.finish_build(cursor, build.job_id, build.cookie, now,
                       BuildStatus.CANCELLED,
                       last_error="cancelled (abort timed out)")
        B.set_clean_status(cursor, v.id, BuilderCleanStatus.DIRTY, now)
    await scanner.commit(force)
    scanner.cancel_deadline = None
