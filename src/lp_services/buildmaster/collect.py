"""Collection: a WAITING builder's log and result files are fetched,
checked, stored, and the build finished with the status its result maps
to; then the agent is cleaned."""

import os
import tempfile
from pathlib import Path

from lp_services.buildmaster import builders as B
from lp_services.buildmaster import queue as Q
from lp_services.buildmaster.agentclient import AgentError
from lp_services.buildmaster.enums import BuilderCleanStatus, BuildStatus
from lp_services.buildmaster.farm import ScanError
from lp_services.protocol import states as wire
from lp_services.protocol.names import InvalidFileName, check_filename, is_sha1

__all__ = [
    "RESULTS",
    "clean_agent",
    "collect",
    "fetch_results",
    "store_results",
]


#: The agent's build results and the build status each ends in.
RESULTS = {
    wire.BuildStatus.OK: BuildStatus.FULLYBUILT,
    wire.BuildStatus.PACKAGEFAIL: BuildStatus.FAILEDTOBUILD,
    wire.BuildStatus.DEPFAIL: BuildStatus.MANUALDEPWAIT,
    wire.BuildStatus.CHROOTFAIL: BuildStatus.CHROOTWAIT,
}


async def collect(scanner, v, agent, status):
    build = v.build
    result = status.result
    now = scanner.farm.now()
    if result == wire.BuildStatus.GIVENBACK:
        await scanner.commit(Q.reset_build, build.job_id, build.cookie, now,
                             "given back by the builder")
        await clean_agent(scanner, agent)
        return
    if result not in RESULTS:
        raise ScanError("builder reported %s for build %d"
                        % (result.short, build.job_id))
    if result == wire.BuildStatus.OK:
        await scanner.commit(Q.mark_gathering, build.job_id, build.cookie)
    fetched = await fetch_results(scanner, v, agent, status)
    try:
        await scanner.commit(store_results, scanner.farm.file_store, v,
                             fetched, RESULTS[result], status, now,
                             _store=True)
    finally:
        for _, _, path in fetched:
            path.unlink(missing_ok=True)
    scanner.log.info("{name}: build {job} ended {result}", name=scanner.name,
                     job=build.job_id, result=RESULTS[result].name)
    await clean_agent(scanner, agent)


async def fetch_results(scanner, v, agent, status):
    """Fetch the log and every result file to temporary files;
    return [(name, sha1 or None, path)]. Refuses bad names and
    hashes before fetching anything."""
    build = v.build
    wanted = [("buildlog_%s_%d.txt" % (build.build_type, build.job_id),
               "buildlog")]
    for name, sha1 in sorted(status.filemap.items()):
        try:
            check_filename(name)
        except InvalidFileName as error:
            raise ScanError("agent returned an unsafe result file name: "
                            "%s" % error) from None
        if not is_sha1(sha1):
            raise ScanError("agent returned a bad sha1 %r for %r"
                            % (sha1, name))
        wanted.append((name, sha1))
    fetched = []
    try:
        for name, sha1 in wanted:
            fd, tmp = tempfile.mkstemp(dir=scanner.farm.incoming_dir(),
                                       prefix="fetch-")
            path = Path(tmp)
            fetched.append((name, None if sha1 == "buildlog" else sha1,
                            path))
            with os.fdopen(fd, "wb") as out:
                try:
                    await agent.fetch_file(sha1, out)
                except AgentError as error:
                    raise ScanError(str(error)) from None
    except BaseException:
        for _, _, path in fetched:
            path.unlink(missing_ok=True)
        raise
    return fetched


def store_results(store, cursor, file_store, v, fetched, build_status,
                  status, now):
    from lp_services.database.sql import raw_cursor
    from lp_services.job.admin import job_owners

    fs = file_store
    log_id, files = None, []
    # A private build's log and results are restricted: served only to
    # its requester and to operators (lp_services.filestore.access).
    private = job_owners(raw_cursor(store), [v.build.job_id])[
        v.build.job_id].private
    for name, sha1, path in fetched:
        with open(path, "rb") as stream:
            record = fs.add(store, name, stream, expected_sha1=sha1,
                            mimetype="text/plain" if sha1 is None
                            else "application/octet-stream",
                            restricted=private)
        if sha1 is None:
            log_id = record.id
        else:
            files.append((name, record.id))
    cursor = raw_cursor(store)
    builder = Q.finish_build(
        cursor, v.build.job_id, v.build.cookie, now, build_status,
        log_id=log_id, files=files,
        dependencies=(status.dependencies
                      if build_status == BuildStatus.MANUALDEPWAIT
                      else None),
        last_error=(None if build_status == BuildStatus.FULLYBUILT
                    else "build ended %s" % build_status.name))
    if builder is not None:
        B.reset_failure_count(cursor, v.id)


async def clean_agent(scanner, agent):
    """Clean the agent; a non-virtual builder is then CLEAN (a virtual
    one stays DIRTY until it is reset)."""
    await agent.clean()
    scanner.last_state = wire.BuilderStatus.IDLE
    v = scanner.vitals
    if v is not None and not v.virtualized and v.build is None:
        await scanner.commit(B.set_clean_status, v.id,
                             BuilderCleanStatus.CLEAN, scanner.farm.now(),
                             expected=BuilderCleanStatus.DIRTY)
