"""A generated source package (lptest 1.0, 3.0 native, arch:all) for the
tests that need a real one without fetching it from the archive."""

import subprocess
from pathlib import Path

__all__ = ["CHANGELOG", "CONTROL", "RULES", "make_source_package"]

CONTROL = """\
Source: lptest
Section: misc
Priority: optional
Maintainer: lp-services tests <tests@example.invalid>
Build-Depends: {build_depends}
Rules-Requires-Root: no
Standards-Version: 4.6.2

Package: lptest
Architecture: all
Description: lp-services test package
 A package the binarypackage tests build.
"""


CHANGELOG = """\
lptest (1.0) unstable; urgency=medium

  * Test build.

 -- lp-services tests <tests@example.invalid>  Sun, 29 Nov 2026 00:00:00 +0000
"""


RULES = """\
#!/usr/bin/make -f
build build-arch build-indep:
\techo lptest | xxd -p > hexdump.txt
binary binary-arch binary-indep: build
\trm -rf debian/tmp
\tmkdir -p debian/tmp/DEBIAN debian/tmp/usr/share/lptest
\tcp hexdump.txt debian/tmp/usr/share/lptest/
\tdpkg-gencontrol -plptest -Pdebian/tmp
\tdpkg-deb --root-owner-group --build debian/tmp ..
clean:
\trm -rf debian/tmp debian/files hexdump.txt
"""


def make_source_package(where: Path, build_depends: str) -> dict:
    """Make lptest 1.0 (3.0 native) with dpkg-source -b; return the
    files of the source package, name -> Path."""
    src = where / "lptest-1.0"
    (src / "debian" / "source").mkdir(parents=True)
    (src / "debian" / "control").write_text(
        CONTROL.format(build_depends=build_depends))
    (src / "debian" / "changelog").write_text(CHANGELOG)
    (src / "debian" / "rules").write_text(RULES)
    (src / "debian" / "rules").chmod(0o755)
    (src / "debian" / "source" / "format").write_text("3.0 (native)\n")
    subprocess.run(["dpkg-source", "-b", src.name], cwd=where, check=True,
                   capture_output=True)
    return {p.name: p for p in where.iterdir() if p.is_file()}
