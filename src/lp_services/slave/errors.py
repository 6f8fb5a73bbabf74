"""Errors the agent reports to its caller, each with its XML-RPC fault code.

The domain object raises these; the XML-RPC layer turns them into
``xmlrpc.client.Fault(code, message)``. Codes 8001/8002 are Twisted's own
(method not found, unexpected failure).
"""

__all__ = [
    "AgentDiskError",
    "RequestRefused",
    "BadArguments",
    "BadBuildId",
    "BadFileName",
    "BadSha1",
    "NotClean",
    "StaleLease",
    "WrongState",
    "FAULT_CODES",
]


class RequestRefused(Exception):
    """A request the agent refuses; nothing was changed."""

    fault_code = 1


class BadArguments(RequestRefused):
    """Wrong number or types of arguments, or bad build ``args``."""

    fault_code = 1


class WrongState(RequestRefused):
    """The method is not allowed in the agent's current state."""

    fault_code = 2


class BadBuildId(RequestRefused):
    """An empty, too long or unsafe build id."""

    fault_code = 3


class BadFileName(RequestRefused):
    """A file name that is not one safe path component."""

    fault_code = 4


class BadSha1(RequestRefused):
    """Not 40 lower-case hexadecimal digits."""

    fault_code = 5


class NotClean(RequestRefused):
    """The work directory holds files the agent could not remove (a
    failed ``clean()`` or what a previous run left): no build is accepted
    over them. The message names them and says why."""

    fault_code = 6


class AgentDiskError(RequestRefused):
    """The agent's own disk refused what a request needs (e.g. ENOSPC
    making the build directory); nothing was changed."""

    fault_code = 7


class StaleLease(RequestRefused):
    """A state change from a buildmaster whose lease on this builder is
    older than one the agent has seen (``/rpc?master=…&lease=N``): that
    master lost the builder, perhaps while paused; nothing was changed."""

    fault_code = 8


#: code -> meaning, for docs and tests.
FAULT_CODES = {
    1: "bad arguments (count, types, build args)",
    2: "wrong state for this method",
    3: "bad build id",
    4: "bad file name",
    5: "bad sha1",
    6: "the work directory is not clean (leftovers could not be removed)",
    7: "the agent's disk refused the request (e.g. full)",
    8: "a buildmaster's lease older than one already seen (it lost the builder)",
    8001: "no such method (Twisted)",
    8002: "unexpected failure or unparseable request (Twisted)",
}
