"""Dispatch: claim the best candidate for an idle, clean builder, send it
the chroot and source files, and start the build (the first row of the
scanner's decision table, :mod:`.scanner`)."""

from lp_services.buildmaster import builders as B
from lp_services.buildmaster import queue as Q
from lp_services.buildmaster.agentclient import AgentError
from lp_services.buildmaster.blame import BUILDER_FAILURE_THRESHOLD
from lp_services.buildmaster.enums import BuilderCleanStatus, BuildStatus
from lp_services.protocol import states as wire

__all__ = [
    "dispatch",
    "dispatch_failed",
    "finish_without_chroot",
    "start_build",
]


class BuildTypeRefused(Exception):
    """The agent answered ``build()`` with UNKNOWNBUILDER: it does not
    offer the build's type (its ``info()`` changed since it was read)."""


async def dispatch(scanner, v, agent):
    pending = scanner.farm.pending
    if not any((p, v.virtualized) in pending for p in v.processors):
        return
    if not v.build_types:
        return  # it offers nothing (or info() not read yet)
    config = scanner.farm.config
    now = scanner.farm.now()

    def claim(cursor):
        import psycopg2.errors

        cursor.execute("SAVEPOINT claim")
        try:
            found = Q.claim_build(
                cursor, builder_id=v.id, processors=list(v.processors),
                virtualized=v.virtualized, resources=list(v.resources),
                now=now, holder=config.identity, lease=config.lease,
                build_types=list(v.build_types))
        except psycopg2.errors.UniqueViolation:
            # Another buildmaster gave this builder a build first.
            cursor.execute("ROLLBACK TO SAVEPOINT claim")
            return None
        if found is not None:
            B.set_clean_status(cursor, v.id, BuilderCleanStatus.DIRTY,
                               now)
        return found
    found = await scanner.commit(claim)
    if found is None:
        return
    if found.chroot_sha1 is None:
        await scanner.commit(finish_without_chroot, found, v.id,
                             scanner.farm.now())
        return
    scanner.log.info("{name}: dispatching build {job}", name=scanner.name,
                     job=found.job_id)
    try:
        await start_build(scanner, v, agent, found)
    except BuildTypeRefused as refused:
        await type_refused(scanner, v, found, refused)
    except Exception as error:
        await dispatch_failed(scanner, v, found, error)
    else:
        scanner.last_state = wire.BuilderStatus.BUILDING
        if found.queued_at is not None:
            from lp_services.metrics import record_dispatch_latency

            waited = scanner.farm.now() - found.queued_at
            record_dispatch_latency(max(0.0, waited.total_seconds()))


def finish_without_chroot(cursor, found, builder_id, now):
    """The claimed build has no chroot for its series: CHROOTWAIT, and the
    builder, given nothing, is clean again."""
    Q.finish_build(cursor, found.job_id, found.cookie, now,
                   BuildStatus.CHROOTWAIT,
                   last_error="no chroot for %s series %s"
                   % (found.processor, found.series))
    B.set_clean_status(cursor, builder_id, BuilderCleanStatus.CLEAN, now)


async def start_build(scanner, v, agent, found):
    from lp_services.filestore.access import agent_credentials

    # The chroot is public; the build's own files may be restricted
    # (private work, API uploads): the file store serves those to the
    # holder of this build's cookie (lp_services.filestore.access).
    fetches = [(found.chroot_sha1, ("buildd", v.secret or ""))] + [
        (sha1, agent_credentials(found.job_id, found.cookie))
        for sha1 in sorted(set(found.filemap.values()))]
    for sha1, (user, password) in fetches:
        present, info = await agent.ensurepresent(
            sha1, scanner.farm.file_url(sha1), user, password)
        if not present:
            raise AgentError("ensurepresent(%s) failed: %s" % (sha1, info))
    args = {"arch_tag": found.processor, "series": found.series,
            "fast_cleanup": found.virtualized,
            "build_url": scanner.farm.build_url(found.job_id)}
    args.update(found.build_args)
    answer, info = await agent.build(found.cookie, found.build_type,
                                     found.chroot_sha1,
                                     dict(found.filemap), args)
    if answer == wire.UNKNOWNBUILDER:
        raise BuildTypeRefused(info)
    if answer != wire.BuilderStatus.BUILDING.value:
        raise AgentError("build() answered %s: %s" % (answer, info))


async def type_refused(scanner, v, found, refused):
    """The agent does not offer the build's type after all: the build
    waits again (the attempt not counted), nobody is blamed, and the
    agent's ``info()`` is read again at the next scan."""
    scanner.log.info("{name}: does not offer {type} ({info}); build {job} "
                     "waits for another builder", name=scanner.name,
                     type=found.build_type, info=str(refused), job=found.job_id)
    now = scanner.farm.now()

    def undo(cursor):
        Q.give_back_build(cursor, found.job_id, found.cookie, now,
                          "builder %s does not offer build type %s"
                          % (v.name, found.build_type))
        B.forget_info(cursor, v.id)
    await scanner.commit(undo)


async def dispatch_failed(scanner, v, found, error):
    """The agent failed during dispatch: the build goes back to
    WAITING and the builder takes the failure."""
    scanner.log.warn("{name}: dispatch of {job} failed: {error}",
                     name=scanner.name, job=found.job_id, error=str(error))
    now = scanner.farm.now()

    def undo(cursor):
        Q.reset_build(cursor, found.job_id, found.cookie, now,
                      "dispatch failed: %s" % error)
        count, _ = B.count_failure(cursor, v.id, None)
        if count >= BUILDER_FAILURE_THRESHOLD:
            B.builder_failed(cursor, v.id, "dispatch failed %d times; "
                             "last: %s" % (count, error))
    await scanner.commit(undo)
