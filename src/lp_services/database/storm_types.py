"""Storm property types the stock set lacks."""

import enum
import json

from storm.properties import Enum, SimpleProperty
from storm.variables import JSONVariable

__all__ = ["IntEnumCol", "JSONB"]


class _JSONBVariable(JSONVariable):
    """psycopg2 decodes ``jsonb`` itself; accept its values as they come."""

    __slots__ = ()

    def _loads(self, value):
        if isinstance(value, str):
            return json.loads(value)
        return value


class JSONB(SimpleProperty):
    """A ``jsonb`` column holding any JSON-serialisable value."""

    variable_class = _JSONBVariable


def IntEnumCol(enum_class: type[enum.IntEnum], **kwargs) -> Enum:
    """A smallint column read and written as members of ``enum_class``."""
    return Enum(map={member: member.value for member in enum_class}, **kwargs)
