"""Recipes: a cheap native job that checks a build before a builder is spent.

A recipe is a TOML file (documented in docs/recipes.md)::

    name = "hello"
    processor = "amd64"
    series = "default"              # optional
    urgency = "medium"              # low | medium | high | emergency
    virtualized = false             # optional
    script = '''
    #!/bin/sh
    set -e
    tar xf hello.tar.gz
    cp hello/README "$LP_OUTPUT_DIR/"
    '''                             # or: script_file = "build.sh"
    results = ["README", "*.txt"]   # glob patterns the results must match

    [[sources]]
    url = "http://example.org/hello.tar.gz"
    sha1 = "0123456789abcdef0123456789abcdef01234567"
    filename = "hello.tar.gz"       # optional: the URL's last part

``lp-services recipe request FILE`` enqueues a native ``recipe`` job holding
the parsed recipe. The job (type :class:`RecipeJobType`, run by a job
runner) checks everything a builder would trip over: the format and every
field, every source reachable and matching its sha1 (fetched into the file
store), a chroot registered for the processor and series. On success it
queues the build — a new job whose prerequisite is the recipe job — in the
same transaction that completes the recipe job, so the build exists if and
only if the check passed. On failure the job fails with a message naming
the field or the source, and nothing is queued.
"""

import fnmatch
import io
import os
import re
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path

from lp_services.job.registry import JobType, UserError, job_types
from lp_services.protocol.names import is_sha1
from lp_services.recipes.sources import SourceFetcher, SourceRefused, SourceUnreachable

__all__ = [
    "RECIPE_JOB_TYPE",
    "Recipe",
    "RecipeError",
    "RecipeJobType",
    "Source",
    "SourceUnreachable",
    "load_recipe_file",
    "build_script",
    "fetch_source",
    "read_script_file",
    "parse_recipe",
]

RECIPE_JOB_TYPE = "recipe"

#: The largest source a recipe may fetch.
MAX_SOURCE_SIZE = 2 << 30
#: The largest script_file: a build script, not a data file.
MAX_SCRIPT_SIZE = 1 << 20

_URGENCIES = ("low", "medium", "high", "emergency")
_NAME = re.compile(r"^[a-z0-9][a-z0-9+._-]{0,99}$")
# Result patterns become shell case patterns: no quoting characters.
_PATTERN = re.compile(r"^[A-Za-z0-9._+*?\[\]-]{1,100}$")
_FIELDS = {"name", "processor", "series", "urgency", "virtualized", "script",
           "results", "sources", "build_type", "script_file"}


class RecipeError(UserError):
    """A recipe that is wrong; the message names the field or source."""


@dataclass(frozen=True)
class Source:
    """A file a recipe's build needs, pinned by its sha1."""

    url: str
    sha1: str
    filename: str


@dataclass(frozen=True)
class Recipe:
    """A checked recipe."""

    name: str
    processor: str
    series: str
    urgency: str
    virtualized: bool
    script: str
    results: tuple[str, ...]
    sources: tuple[Source, ...]

    def to_json(self) -> dict:
        """The recipe as job data."""
        return {
            "name": self.name, "processor": self.processor,
            "series": self.series, "urgency": self.urgency,
            "virtualized": self.virtualized, "script": self.script,
            "results": list(self.results),
            "sources": [{"url": s.url, "sha1": s.sha1, "filename": s.filename}
                        for s in self.sources],
        }


def _field(data, name, kind, required=True, default=None):
    if name not in data:
        if required:
            raise RecipeError("recipe field %r is missing" % name)
        return default
    value = data[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        raise RecipeError("recipe field %r must be %s, not %s" % (
            name, " or ".join(k.__name__ for k in kinds), type(value).__name__))
    return value


def parse_recipe(data) -> Recipe:
    """Check a decoded recipe; raise RecipeError naming what is wrong."""
    from lp_services.protocol.names import InvalidFileName, check_filename

    if not isinstance(data, dict):
        raise RecipeError("a recipe must be a table of fields")
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise RecipeError("unknown recipe field %r" % unknown[0])
    if "script_file" in data:
        raise RecipeError("recipe field 'script_file' must be inlined by "
                          "`recipe request` before the job runs")
    name = _field(data, "name", str)
    if not _NAME.match(name):
        raise RecipeError("recipe field 'name' must match %s" % _NAME.pattern)
    processor = _field(data, "processor", str)
    series = _field(data, "series", str, required=False, default="default")
    urgency = _field(data, "urgency", str, required=False, default="medium")
    if urgency not in _URGENCIES:
        raise RecipeError("recipe field 'urgency' must be one of %s"
                          % ", ".join(_URGENCIES))
    build_type = _field(data, "build_type", str, required=False, default="script")
    if build_type != "script":
        raise RecipeError("recipe field 'build_type' must be 'script'")
    virtualized = _field(data, "virtualized", bool, required=False,
                         default=False)
    script = _field(data, "script", str)
    if not script.strip():
        raise RecipeError("recipe field 'script' is empty")
    results = _field(data, "results", list, required=False, default=[])
    for pattern in results:
        if not isinstance(pattern, str) or not _PATTERN.match(pattern):
            raise RecipeError("recipe field 'results' must list file-name "
                              "patterns (letters, digits, . _ + - * ? [ ]): "
                              "%r" % (pattern,))
    raw_sources = _field(data, "sources", list, required=False, default=[])
    sources = []
    for index, raw in enumerate(raw_sources):
        where = "sources[%d]" % index
        if not isinstance(raw, dict):
            raise RecipeError("recipe field %r must be a table" % where)
        url, sha1 = raw.get("url"), raw.get("sha1")
        if not isinstance(url, str) or not re.match(r"^https?://", url):
            raise RecipeError("recipe field '%s.url' must be an http(s) URL"
                              % where)
        if not is_sha1(sha1):
            raise RecipeError("recipe field '%s.sha1' must be 40 lower-case "
                              "hex digits" % where)
        filename = raw.get("filename") or url.rstrip("/").rsplit("/", 1)[-1]
        try:
            check_filename(filename)
        except InvalidFileName as error:
            raise RecipeError("recipe field '%s.filename': %s"
                              % (where, error)) from None
        if filename in ("build.sh", "recipe.sh"):
            raise RecipeError("recipe field '%s.filename': %s is taken by "
                              "the recipe's script" % (where, filename))
        sources.append(Source(url, sha1, filename))
    names = [s.filename for s in sources]
    if len(set(names)) != len(names):
        raise RecipeError("recipe field 'sources' names one file twice")
    return Recipe(name, processor, series, urgency, virtualized, script,
                  tuple(results), tuple(sources))


def load_recipe_file(path: Path) -> dict:
    """Read a recipe file for ``recipe request``: TOML decoded, a
    ``script_file`` (relative to the recipe) inlined as ``script``.

    :raises RecipeError: unreadable or not TOML.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as error:
        raise RecipeError("cannot read %s: %s" % (path, error.strerror)) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise RecipeError("%s is not valid TOML: %s" % (path, error)) from None
    script_file = data.pop("script_file", None)
    if script_file is not None:
        if "script" in data:
            raise RecipeError("give 'script' or 'script_file', not both")
        if not isinstance(script_file, str):
            raise RecipeError("recipe field 'script_file' must be a path")
        data["script"] = read_script_file(path.parent, script_file)
    return data


def read_script_file(folder: Path, name: str) -> str:
    """The text of a recipe's ``script_file`` ``name``, which must lie
    inside the recipe's ``folder``: a relative path without ``..``, and a
    regular file that is still inside the folder once every symbolic link
    is followed. The file actually opened is checked (through
    /proc/self/fd), so a link swapped in after a check cannot escape.

    The script is published (the job's page, the file store): without
    these checks ``script_file = "/etc/shadow"`` would publish whatever
    the requester's command can read.

    :raises RecipeError: outside the folder, not a regular file, larger
        than MAX_SCRIPT_SIZE, unreadable, or not UTF-8.
    """
    relative = Path(name)
    if not name or relative.is_absolute() or ".." in relative.parts:
        raise RecipeError("recipe field 'script_file' must be a path relative "
                          "to the recipe's folder, without '..': %r" % name)
    folder = Path(folder).resolve()
    outside = RecipeError("recipe field 'script_file' must stay inside the "
                          "recipe's folder: %r leads outside it" % name)
    # Checked before opening (nothing outside is even opened), and again
    # on what was opened (a link swapped in between cannot escape).
    if not (folder / relative).resolve().is_relative_to(folder):
        raise outside
    try:
        fd = os.open(folder / relative,
                     os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as error:
        raise RecipeError("cannot read script_file %s: %s"
                          % (name, error.strerror)) from None
    try:
        if not Path(os.readlink("/proc/self/fd/%d" % fd)).is_relative_to(
                folder):
            raise outside
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise RecipeError("script_file %s is not a regular file" % name)
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as opened:
        content = opened.read(MAX_SCRIPT_SIZE + 1)
    if len(content) > MAX_SCRIPT_SIZE:
        raise RecipeError("script_file %s is larger than %d bytes"
                          % (name, MAX_SCRIPT_SIZE))
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        raise RecipeError("script_file %s is not UTF-8 text" % name) from None


def fetch_source(source: Source, files, cursor, fetcher=None,
                 restricted: bool = False) -> int:
    """Fetch ``source`` into the file store unless present; return the
    library_file id. Runs in a job runner's child process.

    :param fetcher: a :class:`lp_services.recipes.sources.SourceFetcher` (the
        address policy, deadline and minimum rate); by default one with
        the job runner's settings.
    :raises SourceUnreachable: the server could not be reached, answered
        5xx, or was too slow (retried).
    :raises RecipeError: a refused address, a 4xx, a wrong sha1 or an
        oversized source. No message repeats what a server sent.
    """
    from lp_services.filestore.store import (
        ContentMismatch,
        ContentTooLarge,
        add_file_row,
        file_id,
    )
    from lp_services.recipes.sources import SourceFetcher

    known = file_id(cursor, source.sha1)
    if known is not None and files.has(source.sha1):
        return known
    if fetcher is None:
        fetcher = SourceFetcher.from_environ()

    def store(stream):
        return files.put_stream(stream, expected_sha1=source.sha1,
                                max_size=MAX_SOURCE_SIZE)
    try:
        sha1, sha256, size = fetcher.fetch(source.url, store)
    except ContentMismatch:
        # Not the sha1 received: that would tell the requester a hash of
        # whatever the server holds.
        raise RecipeError("source %s: sha1 mismatch: the content is not %s"
                          % (source.url, source.sha1)) from None
    except ContentTooLarge as error:
        raise RecipeError("source %s: %s" % (source.url, error)) from None
    except SourceRefused as error:
        raise RecipeError(str(error)) from None
    return add_file_row(cursor, sha1, sha256, size, source.filename,
                        restricted=restricted)


def build_script(patterns) -> str:
    """The build's entry script: run the recipe's script (recipe.sh), then
    keep in /work/out only the files the result patterns name (and the
    agent's .depwait convention file)."""
    lines = ["#!/bin/sh", "# Written by the recipe job: runs recipe.sh, keeps the results.",
             "set -e", "/bin/sh ./recipe.sh"]
    if patterns:
        lines += [
            "cd /work/out",
            "for f in * .[!.]*; do",
            '    [ -e "$f" ] || continue',
            '    case "$f" in',
            "        .depwait|%s) ;;" % "|".join(patterns),
            '        *) echo "not a result (no pattern matches): $f";'
            ' rm -rf -- "$f" ;;',
            "    esac",
            "done",
        ]
    return "\n".join(lines) + "\n"


def results_match(patterns, filename: str) -> bool:
    """Whether a result file name matches the recipe's patterns (all match
    when there are none)."""
    return not patterns or any(fnmatch.fnmatchcase(filename, p) for p in patterns)


class RecipeJobType(JobType):
    """Checks a recipe and queues its build. See the module docstring."""

    name = RECIPE_JOB_TYPE
    transactional = True
    retryable_errors = (SourceUnreachable,)
    user_errors = (UserError,)
    max_retries = 2
    lease_seconds = 120.0
    timeout_seconds = 1800.0

    def validate(self, data) -> None:
        """Accept any JSON object: the job itself checks every field, so
        that a bad recipe fails visibly with a message naming the field."""
        super().validate(data)

    def run(self, data, context) -> None:
        from lp_services.buildmaster.builders import find_chroot
        from lp_services.buildmaster.queue import BuildRequestError, request_build
        from lp_services.filestore.store import add_file_row, default_file_store
        from lp_services.job.admin import job_owners

        recipe = parse_recipe(data)
        cursor = context.cursor
        processor_id, chroot_id = find_chroot(cursor, recipe.processor,
                                              recipe.series)
        if processor_id is None:
            raise RecipeError("recipe field 'processor': unknown processor %r"
                              % recipe.processor)
        if chroot_id is None:
            raise RecipeError(
                "recipe field 'series': no chroot is registered for %s/%s "
                "(lp-services chroot add)" % (recipe.processor, recipe.series))
        # The build is the recipe's requester's, and as private as the
        # recipe: whoever may see the recipe job sees its build.
        owner = job_owners(cursor, [context.job_id])[context.job_id]
        requester, private = owner.requester, owner.private
        files = default_file_store()
        filemap = {}
        # One fetcher: its deadline covers all of the job's sources.
        fetcher = SourceFetcher.from_environ()
        for source in recipe.sources:
            fetch_source(source, files, cursor, fetcher, restricted=private)
            filemap[source.filename] = source.sha1
        for filename, text in (("recipe.sh", recipe.script),
                               ("build.sh", build_script(recipe.results))):
            sha1, sha256, size = files.put_stream(
                io.BytesIO(text.encode("utf-8")))
            add_file_row(cursor, sha1, sha256, size, filename,
                         restricted=private)
            filemap[filename] = sha1
        try:
            request_build(
                cursor, build_type="script", processor=recipe.processor,
                now=context.now, virtualized=recipe.virtualized,
                series=recipe.series, urgency=recipe.urgency,
                build_args={"script": "build.sh",
                            "results": list(recipe.results),
                            "recipe": recipe.name},
                filemap=filemap, prerequisite=context.job_id,
                private=private,
                requester=requester or "recipe %s" % recipe.name,
                reason="queued by recipe %s (job %d)" % (recipe.name,
                                                         context.job_id))
        except BuildRequestError as error:
            raise RecipeError(str(error)) from None


job_types.register(RecipeJobType())
