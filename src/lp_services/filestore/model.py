"""The Storm model of ``library_file``. See schema/current.sql."""

from datetime import timezone

from storm.locals import Bool, DateTime, Int, Storm, Unicode

__all__ = ["LibraryFile"]


class LibraryFile(Storm):
    """A file in the content-addressed store; its bytes live on disk."""

    __storm_table__ = "library_file"

    id = Int(primary=True)
    sha1 = Unicode(allow_none=False)
    sha256 = Unicode()
    size = Int(allow_none=False)
    filename = Unicode(allow_none=False)
    mimetype = Unicode(allow_none=False, default="application/octet-stream")
    date_created = DateTime(tzinfo=timezone.utc)
    restricted = Bool(allow_none=False, default=False)
    uploader = Unicode()
