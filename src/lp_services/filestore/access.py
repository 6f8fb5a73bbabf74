"""Who may read a stored file.

Content is addressed by sha1, so a file's privacy follows what refers to
it. Anybody may read content that a chroot or public work refers to, or
that was stored unrestricted (a chroot, a public build's log). Content
stored only for private work, or uploaded through the API and not yet
used by public work, is *restricted*: besides operators, only its
uploader, the requester of private work using it, and the agent running a
build that needs it may read it. Everybody else is told it does not
exist (a 404, not a 403: existence does not leak).

An agent proves it runs the build with HTTP Basic credentials the master
hands it in ``ensurepresent``: user ``build-<job id>``, password the
build's cookie (random, known only to the master and that agent, and
void once the build leaves the queue).
"""

import hmac
import re

from lp_services.filestore import queries as Q
from lp_services.job.admin import EVERYONE

__all__ = ["EVERYONE", "agent_credentials", "agent_may_read", "may_read"]

_AGENT_USER = re.compile(r"build-([0-9]{1,18})")


def may_read(cursor, sha1: str, viewer) -> bool:
    """Whether ``viewer`` (:data:`EVERYONE`, a token's name, or None for
    anonymous) may read the stored content ``sha1``; False also when the
    store has no such content."""
    cursor.execute(Q.FILE_OPEN, {"sha1": sha1})
    exists, open_to_all = cursor.fetchone()
    if not exists:
        return False
    if open_to_all or viewer is EVERYONE:
        return True
    cursor.execute(Q.FILE_READERS, {"sha1": sha1, "viewer": viewer
                                    if isinstance(viewer, str) else None})
    public, own = cursor.fetchone()
    return public or own


def agent_credentials(job_id: int, cookie: str) -> tuple[str, str]:
    """(user, password) an agent fetches build ``job_id``'s files with."""
    return "build-%d" % job_id, cookie


def agent_may_read(cursor, sha1: str, user: str, password: str) -> bool:
    """Whether ``user``/``password`` are the credentials of a build that
    is on a builder now and whose files include ``sha1``."""
    match = _AGENT_USER.fullmatch(user or "")
    if match is None or not password:
        return False
    cursor.execute(Q.BUILD_NEEDS_FILE, {"job": int(match.group(1)),
                                        "sha1": sha1})
    row = cursor.fetchone()
    return row is not None and hmac.compare_digest(
        row[0].encode("utf-8"), password.encode("utf-8"))
