"""Build scoring: the one place that decides the order of waiting builds.

The formula (documented in docs/scoring.md)::

    base  = TYPE_BASE[build_type]
          + URGENCY[urgency]
          + (PRIVATE_BOOST if private)
          + POCKET[pocket]            (when given)
          + COMPONENT[component]      (when given)
          + archive_relative          (when given; an archive's own bias)

    score(t) = base + (t - date_created) / AGE_STEP       (ageing)

Ageing adds the same amount to every waiting build per unit of time, so it
never changes the order of two builds that are both waiting; what it does
is let a build that has waited long overtake builds queued after it with a
higher base, so nothing starves (Launchpad's queue has no ageing and low
scores can wait forever while higher ones keep arriving). Because the
term is linear and shared, the order at any time is the order of
``base - created / AGE_STEP``, a constant: that is what
``build_queue.lastscore`` stores (the *sort key*), so the candidate query
orders by an index and no periodic re-scoring pass rewrites a million
rows. The score shown to people is :func:`effective_score`.

A manual rescore (``build rescore ID SCORE``) sets the score *now* to
SCORE and pins it (``build_queue.manual``): automatic re-scoring leaves a
pinned build alone. A pinned build still ages, so even a build pinned low
is eventually dispatched; to hold a build back, suspend its job instead.
"""

from dataclasses import dataclass
from datetime import datetime, timezone

__all__ = [
    "AGE_STEP_SECONDS",
    "AGEING_EPOCH",
    "BUILD_TYPES",
    "COMPONENT",
    "POCKET",
    "PRIVATE_BOOST",
    "ScoreInputs",
    "URGENCY",
    "UnknownBuildType",
    "base_score",
    "effective_score",
    "sort_key",
    "sort_key_for_score",
]

#: Base score per build type; also the registry of build types the master
#: knows how to queue (the agent's ``info()`` lists what it can run).
BUILD_TYPES: dict[str, int] = {
    "binarypackage": 1500,
    "sourcepackagerecipe": 1000,
    "snap": 1000,
    "ci": 1200,
    "script": 1000,
}

#: Urgency: an emergency jumps any normal queue at once; a low build is
#: overtaken by a new medium one for the first ~8 hours (500 age steps).
URGENCY: dict[str, int] = {
    "low": 0,
    "medium": 500,
    "high": 1000,
    "emergency": 3000,
}

#: Private builds (embargoed security work) go first, as in Launchpad.
PRIVATE_BOOST = 10000

#: Launchpad-style pocket and component inputs, used when a build says.
POCKET: dict[str, int] = {
    "release": 1500,
    "proposed": 1500,
    "updates": 1500,
    "security": 2500,
    "backports": 0,
}
COMPONENT: dict[str, int] = {
    "main": 1000,
    "restricted": 1000,
    "universe": 250,
    "multiverse": 0,
    "partner": 0,
}

#: One point of score per minute waited. At this rate a build beats any
#: newer build whose base is up to N points higher after N minutes.
AGE_STEP_SECONDS = 60

#: The origin of the sort key's time term (any fixed instant works; one
#: near the present keeps the stored numbers small).
AGEING_EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)


class UnknownBuildType(ValueError):
    """A build type the master does not know."""


@dataclass(frozen=True)
class ScoreInputs:
    """What a build's score depends on."""

    build_type: str
    urgency: str = "medium"
    private: bool = False
    pocket: str | None = None
    component: str | None = None
    archive_relative: int = 0


def base_score(inputs: ScoreInputs) -> int:
    """The score of a build the moment it is queued (before ageing).

    :raises UnknownBuildType, ValueError: an unknown type, urgency, pocket
        or component.
    """
    if inputs.build_type not in BUILD_TYPES:
        raise UnknownBuildType(
            "unknown build type %r (known: %s)"
            % (inputs.build_type, ", ".join(sorted(BUILD_TYPES))))
    score = BUILD_TYPES[inputs.build_type]
    score += _lookup(URGENCY, inputs.urgency, "urgency")
    if inputs.private:
        score += PRIVATE_BOOST
    if inputs.pocket is not None:
        score += _lookup(POCKET, inputs.pocket, "pocket")
    if inputs.component is not None:
        score += _lookup(COMPONENT, inputs.component, "component")
    return score + int(inputs.archive_relative)


def _lookup(table, key, what):
    try:
        return table[key]
    except KeyError:
        raise ValueError("unknown %s %r (known: %s)"
                         % (what, key, ", ".join(table))) from None


def _age_steps(when: datetime) -> int:
    return int((when - AGEING_EPOCH).total_seconds() // AGE_STEP_SECONDS)


def sort_key(base: int, date_created: datetime) -> int:
    """The stored ``lastscore`` of a build with this base score."""
    return base - _age_steps(date_created)


def sort_key_for_score(score: int, now: datetime) -> int:
    """The stored ``lastscore`` that makes the score at ``now`` be ``score``."""
    return score - _age_steps(now)


def effective_score(lastscore: int, now: datetime) -> int:
    """The score at ``now`` of a build whose sort key is ``lastscore``."""
    return lastscore + _age_steps(now)
