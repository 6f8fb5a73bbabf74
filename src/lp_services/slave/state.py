"""The agent's one transition table between the protocol's builder states
(:mod:`lp_services.protocol.states`)."""

from lp_services.protocol.states import BuilderStatus

__all__ = [
    "IllegalStateChange",
    "StateMachine",
    "TRANSITIONS",
]


#: Every legal edge. Anything else raises :class:`IllegalStateChange`.
TRANSITIONS: dict[BuilderStatus, frozenset[BuilderStatus]] = {
    # build() accepted a build.
    BuilderStatus.IDLE: frozenset({BuilderStatus.BUILDING}),
    # The build ended by itself, or abort() was called.
    BuilderStatus.BUILDING: frozenset({BuilderStatus.WAITING,
                                       BuilderStatus.ABORTING}),
    # Every process of the build is dead; the result is ABORTED.
    BuilderStatus.ABORTING: frozenset({BuilderStatus.WAITING}),
    # clean() removed the build.
    BuilderStatus.WAITING: frozenset({BuilderStatus.IDLE}),
}


class IllegalStateChange(Exception):
    """An edge that is not in :data:`TRANSITIONS`."""

    def __init__(self, current: BuilderStatus, wanted: BuilderStatus):
        super().__init__("cannot go from %s to %s"
                         % (current.value, wanted.value))
        self.current = current
        self.wanted = wanted


class StateMachine:
    """The agent's current state; moves only along :data:`TRANSITIONS`."""

    def __init__(self, initial: BuilderStatus = BuilderStatus.IDLE):
        self._state = initial

    @property
    def state(self) -> BuilderStatus:
        """The current state."""
        return self._state

    def can(self, wanted: BuilderStatus) -> bool:
        """Whether ``wanted`` is reachable in one step from here."""
        return wanted in TRANSITIONS[self._state]

    def move(self, wanted: BuilderStatus) -> None:
        """Go to ``wanted`` or raise :class:`IllegalStateChange`."""
        if not self.can(wanted):
            raise IllegalStateChange(self._state, wanted)
        self._state = wanted
