"""``lp-services chroot build``: make a chroot tarball with debootstrap.

Attach ``build`` to the ``chroot`` group (``chroot.add_command(build)``).
The work is lp_services.images.chroots.build_chroot(); this module only parses
options, reports, and (``--register``) hands the tarball to ``chroot add``.
"""

import shutil
from pathlib import Path

import click

__all__ = ["build"]


@click.command()
@click.option("--series", default="bookworm", show_default=True,
              help="Debian series (suite codename).")
@click.option("--variant", type=click.Choice(["minbase", "buildd"]),
              default="minbase", show_default=True,
              help="debootstrap variant: buildd adds build-essential.")
@click.option("--processor", default="amd64", show_default=True,
              help="Architecture (debootstrap --arch).")
@click.option("--mirror", metavar="URL",
              help="Debian mirror (default: the one in "
                   "/etc/apt/sources.list.d/debian.sources).")
@click.option("--include", "include", multiple=True, metavar="PACKAGE",
              help="Extra package to install (repeatable).")
@click.option("--rebuild", is_flag=True,
              help="Build even if a cached tarball exists.")
@click.option("--output", "-o", type=click.Path(dir_okay=False,
                                                path_type=Path),
              help="Also copy the tarball here.")
@click.option("--register", is_flag=True,
              help="Register it with `chroot add` for PROCESSOR/SERIES.")
@click.pass_context
def build(click_ctx, series, variant, processor, mirror, include, rebuild,
          output, register):
    """Build a zstd-compressed chroot tarball (cached; see
    docs/virtualization.md)."""
    from lp_services.images.chroots import ChrootError, build_chroot

    try:
        result = build_chroot(series=series, variant=variant,
                              processor=processor, mirror=mirror,
                              include=tuple(include), rebuild=rebuild,
                              log=lambda line: click.echo(line, err=True))
    except ChrootError as e:
        raise click.ClickException(str(e)) from None
    path = result.path
    if output is not None:
        shutil.copyfile(result.path, output)
        path = output
    click.echo("%s %s (%s/%s %s, %.1f MB%s)" % (
        result.sha1, path, processor, series, variant, result.size / 1e6,
        ", cached" if result.cached else ""))
    if register:
        from lp_services.cli.chroot import add
        click_ctx.invoke(add, processor=processor, series=series, file=path)
