"""The content-addressed file store.

Bytes live on disk under ``<root>/<sha1[:2]>/<sha1>``, written to a temporary
file in the same directory and renamed into place, so a reader never sees a
partial file and two writers of one content agree. ``library_file`` rows
index them (name, size, hashes); several rows may share one content.

The store is blocking: Twisted code calls it from the transactor's threads.
"""

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lp_services.protocol.names import check_filename, content_path

__all__ = [
    "ContentMismatch",
    "ContentTooLarge",
    "FileRecord",
    "FileStore",
    "add_file_row",
    "default_file_store",
    "file_id",
    "uploaded_by",
]

_CHUNK = 1 << 20


class ContentMismatch(ValueError):
    """Stored content whose sha1 is not the one expected."""


class ContentTooLarge(ValueError):
    """Stored content larger than allowed."""


@dataclass(frozen=True)
class FileRecord:
    """A stored file, as plain values (safe to return from a transactor)."""

    id: int
    sha1: str
    sha256: str | None
    size: int
    filename: str


class FileStore:
    """Files under ``root``, indexed by ``library_file`` rows."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path_for(self, sha1: str) -> Path:
        """Where the content with this sha1 lives (whether or not it exists)."""
        return content_path(self.root, sha1)

    def has(self, sha1: str) -> bool:
        """Whether the content with this sha1 is on disk."""
        return self.path_for(sha1).exists()

    def put_stream(self, stream, expected_sha1: str | None = None,
                   max_size: int | None = None) -> tuple[str, str, int]:
        """Copy a binary stream into the store; return (sha1, sha256, size).

        :raises ValueError: the content's sha1 differs from ``expected_sha1``
            or it is larger than ``max_size``; nothing is kept.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        sha1, sha256, size = hashlib.sha1(), hashlib.sha256(), 0
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := stream.read(_CHUNK):
                    size += len(chunk)
                    if max_size is not None and size > max_size:
                        raise ContentTooLarge("file larger than %d bytes"
                                              % max_size)
                    sha1.update(chunk)
                    sha256.update(chunk)
                    out.write(chunk)
            digest = sha1.hexdigest()
            if expected_sha1 is not None and digest != expected_sha1:
                raise ContentMismatch("sha1 mismatch: expected %s, got %s"
                                      % (expected_sha1, digest))
            final = self.path_for(digest)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(tmp, 0o644)
            os.replace(tmp, final)
            tmp = None
            return digest, sha256.hexdigest(), size
        finally:
            if tmp is not None:
                os.unlink(tmp)

    def add(self, store, filename: str, stream, expected_sha1: str | None = None,
            mimetype: str = "application/octet-stream",
            max_size: int | None = None, restricted: bool = False,
            uploader: str | None = None) -> FileRecord:
        """Store the content and add a ``library_file`` row in ``store``'s
        transaction; return its record.

        :param restricted: for private work (or uploaded through the API):
            served to others only once public work references the content
            (see :func:`lp_services.filestore.access.may_read`).
        :param uploader: the API token that uploaded it.
        """
        from lp_services.filestore.model import LibraryFile

        check_filename(filename)
        sha1, sha256, size = self.put_stream(stream, expected_sha1, max_size)
        row = LibraryFile()
        row.sha1, row.sha256, row.size = sha1, sha256, size
        row.filename, row.mimetype = filename, mimetype
        row.restricted, row.uploader = bool(restricted), uploader
        store.add(row)
        store.flush()
        return FileRecord(row.id, sha1, sha256, size, filename)

    def add_path(self, store, path: Path, filename: str | None = None,
                 **kwargs) -> FileRecord:
        """As :meth:`add`, from a file on disk."""
        with open(path, "rb") as stream:
            return self.add(store, filename or Path(path).name, stream, **kwargs)

    def get(self, store, file_id: int) -> FileRecord | None:
        """The record of ``library_file`` ``file_id``, or None."""
        from lp_services.filestore.model import LibraryFile

        row = store.get(LibraryFile, file_id)
        if row is None:
            return None
        return FileRecord(row.id, row.sha1, row.sha256, row.size, row.filename)

    def open(self, sha1: str):
        """Open the content with this sha1 for reading (binary)."""
        return open(self.path_for(sha1), "rb")


def file_id(cursor, sha1: str) -> int | None:
    """The id of a ``library_file`` row holding ``sha1``, or None."""
    from lp_services.filestore import queries as FQ

    cursor.execute(FQ.FILE_ID, {"sha1": sha1})
    row = cursor.fetchone()
    return None if row is None else row[0]


def uploaded_by(cursor, sha1: str, uploader: str) -> bool:
    """Whether ``uploader`` (a token's name) stored ``sha1`` through the
    API before (an upload again is then a no-op)."""
    from lp_services.filestore import queries as FQ

    cursor.execute(FQ.UPLOADED_BY, {"sha1": sha1, "uploader": uploader})
    return cursor.fetchone() is not None


def add_file_row(cursor, sha1: str, sha256: str, size: int,
                 filename: str, restricted: bool = False,
                 uploader: str | None = None) -> int:
    """A ``library_file`` row for content already stored (by
    :meth:`FileStore.put_stream`), in the cursor's transaction; its id.
    The file name is checked as :meth:`FileStore.add` checks it."""
    from lp_services.filestore import queries as FQ

    check_filename(filename)
    cursor.execute(FQ.ADD_FILE, {"sha1": sha1, "sha256": sha256,
                                 "size": size, "filename": filename,
                                 "restricted": bool(restricted),
                                 "uploader": uploader})
    return cursor.fetchone()[0]


def default_file_store(home: Path | None = None) -> FileStore:
    """The file store under the state directory: ``$LP_HOME/files``."""
    from lp_services.config import lp_home

    return FileStore(lp_home(home) / "files")
