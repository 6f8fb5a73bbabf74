"""Storm models of the schema's own bookkeeping tables."""

from datetime import timezone

from storm.locals import Bool, DateTime, Int, Storm, Unicode

__all__ = ["SchemaRevision", "SchemaViews"]


class SchemaRevision(Storm):
    """A schema patch applied to this database (patch 0: the baseline)."""

    __storm_table__ = "schema_revision"

    patch = Int(primary=True)
    name = Unicode(allow_none=False)
    date_applied = DateTime(tzinfo=timezone.utc)
    applied_by = Unicode(allow_none=False)


class SchemaViews(Storm):
    """The sha1 of the views.sql last applied."""

    __storm_table__ = "schema_views"

    singleton = Bool(primary=True, default=True)
    sha1 = Unicode(allow_none=False)
