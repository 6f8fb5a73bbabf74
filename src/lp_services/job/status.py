"""The job lifecycle: statuses and the only legal moves between them.

Persisted as ``job.status`` (smallint). Code never sets a status directly:
it asks for a transition, which is checked here and applied by a guarded
SQL ``UPDATE ... WHERE status IN (legal sources)`` (see
:func:`transition_sources`), so a concurrent change loses cleanly instead
of being overwritten.
"""

import enum

__all__ = [
    "JobStatus",
    "InvalidTransition",
    "TERMINAL_STATUSES",
    "TRANSITIONS",
    "check_transition",
    "transition_sources",
]


class JobStatus(enum.IntEnum):
    """Where a job is in its life."""

    #: Queued; may be claimed once ``scheduled_start`` passes and its
    #: prerequisite (if any) has completed.
    WAITING = 0
    #: Held by a runner or a builder, under a lease.
    RUNNING = 1
    #: Finished successfully. Terminal.
    COMPLETED = 2
    #: Finished unsuccessfully (error, cancellation, failed prerequisite).
    #: An operator may retry it.
    FAILED = 3
    #: Held back by an operator; resumes as WAITING.
    SUSPENDED = 4


#: The legal moves. Anything not listed raises :class:`InvalidTransition`.
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.WAITING: frozenset({
        JobStatus.RUNNING,     # claimed by a runner or dispatched to a builder
        JobStatus.SUSPENDED,   # held by an operator
        JobStatus.FAILED,      # cancelled, or its prerequisite failed
    }),
    JobStatus.RUNNING: frozenset({
        JobStatus.COMPLETED,   # success
        JobStatus.FAILED,      # error, no attempts left, or cancelled
        JobStatus.WAITING,     # retry, hand-back at shutdown, lease lost
        JobStatus.SUSPENDED,   # held by an operator while running
    }),
    JobStatus.SUSPENDED: frozenset({
        JobStatus.WAITING,     # resumed
        JobStatus.FAILED,      # cancelled while held
    }),
    JobStatus.FAILED: frozenset({
        JobStatus.WAITING,     # retried by an operator
    }),
    JobStatus.COMPLETED: frozenset(),
}

#: Statuses a job leaves only by an operator's explicit action, if ever.
TERMINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED})


class InvalidTransition(Exception):
    """A status change that the transition table does not allow."""

    def __init__(self, current: JobStatus, requested: JobStatus):
        self.current = JobStatus(current)
        self.requested = JobStatus(requested)
        super().__init__(
            "a job cannot go from %s to %s"
            % (self.current.name, self.requested.name))


def check_transition(current: JobStatus, requested: JobStatus) -> None:
    """Raise :class:`InvalidTransition` unless current -> requested is legal."""
    if JobStatus(requested) not in TRANSITIONS[JobStatus(current)]:
        raise InvalidTransition(current, requested)


def transition_sources(requested: JobStatus) -> tuple[int, ...]:
    """The statuses from which ``requested`` may be reached, as ints for SQL.

    Guarded updates use this: ``WHERE status = ANY(%(sources)s)``.
    """
    requested = JobStatus(requested)
    return tuple(sorted(
        int(source) for source, targets in TRANSITIONS.items()
        if requested in targets))
