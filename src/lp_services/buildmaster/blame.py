"""Who is to blame for a failure: the builder, the build, or nobody yet.

Launchpad's rules (lib/lp/buildmaster/manager.py, ``judge_failure``): the
consecutive-failure counts of the builder and of its current build decide.
Equal counts cannot tell, so retry a little and then reset the build so
it can run elsewhere; a builder that failed more than its build is at
fault (reset the build, mark the builder dirty, and disable it once it
reaches :data:`BUILDER_FAILURE_THRESHOLD`); a build that failed more than
its builder is at fault (fail it).
"""

from enum import Enum

__all__ = [
    "BUILDER_FAILURE_THRESHOLD",
    "JOB_RESET_THRESHOLD",
    "SCAN_FAILURE_THRESHOLD",
    "Action",
    "judge_failure",
]

#: A builder with this many counted failures is disabled (builderok false).
BUILDER_FAILURE_THRESHOLD = 5
#: When builder and build failed equally often, reset the build after this
#: many (a retry elsewhere tells who is at fault).
JOB_RESET_THRESHOLD = 3
#: Consecutive failed scans that count as one failure: a single network
#: glitch must not count against anyone.
SCAN_FAILURE_THRESHOLD = 5


class Action(Enum):
    """What to do to the builder or the build."""

    NOTHING = "nothing"
    #: Build: back to WAITING (retry policy). Builder: mark dirty.
    RESET = "reset"
    #: Build: FAILEDTOBUILD. Builder: disable.
    FAIL = "fail"


def judge_failure(builder_count: int, job_count: int,
                  retry: bool = True) -> tuple[Action, Action]:
    """(builder action, build action) for the given failure counts.

    :param retry: whether a tie may be retried before the build is reset
        (false for failures that cannot be a glitch).
    """
    if builder_count == job_count:
        if not retry or builder_count >= JOB_RESET_THRESHOLD:
            return Action.NOTHING, Action.RESET
        return Action.NOTHING, Action.NOTHING
    if builder_count > job_count:
        if builder_count < BUILDER_FAILURE_THRESHOLD:
            return Action.RESET, Action.RESET
        return Action.FAIL, Action.RESET
    return Action.NOTHING, Action.FAIL
