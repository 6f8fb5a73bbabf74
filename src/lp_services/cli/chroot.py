"""``lp-services chroot``: chroot tarballs builds unpack."""

from pathlib import Path

import click

from lp_services.cli.context import echo_json, pass_context, user_errors

__all__ = ["chroot"]


@click.group()
def chroot():
    """Chroot tarballs per processor and series."""


@chroot.command()
@click.option("--processor", required=True, help="Processor name.")
@click.option("--series", default="default", show_default=True)
@click.argument("file", type=click.Path(exists=True, dir_okay=False,
                                        path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
@user_errors
def add(ctx, processor, series, file, as_json):
    """Store FILE in the file store as the chroot of PROCESSOR/SERIES
    (replacing the previous one)."""
    from lp_services.buildmaster.builders import find_chroot, register_chroot
    from lp_services.database.sql import raw_cursor
    from lp_services.filestore.store import default_file_store

    file_store = default_file_store(ctx.home)

    def add_chroot(store):
        cursor = raw_cursor(store)
        if find_chroot(cursor, processor, series)[0] is None:
            raise click.ClickException(
                "unknown processor %r (add a builder for it first)"
                % processor)
        record = file_store.add_path(store, file)
        register_chroot(raw_cursor(store), processor, series, record.id)
        return record.sha1

    ctx.connect().close()  # an unreachable database: one clear line
    transactor = ctx.transactor()
    try:
        sha1 = transactor.run_blocking(add_chroot)
    finally:
        transactor.stop()
    if as_json:
        echo_json({"processor": processor, "series": series, "sha1": sha1})
    else:
        click.echo("chroot for %s/%s: %s" % (processor, series, sha1))


def _attach_build() -> None:
    # `chroot build` (debootstrap) lives in its own module.
    from lp_services.cli.chroot_build import build

    chroot.add_command(build)


_attach_build()
