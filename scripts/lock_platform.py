"""The platform a lock was resolved on: `pip freeze` drops environment markers, so a lock holds
for one Python version, operating system and machine, which its header names.

    python scripts/lock_platform.py header          # the header line for this interpreter (lock.sh)
    python scripts/lock_platform.py check LOCKFILE  # exit 2 with one line when LOCKFILE is for another platform
"""
from __future__ import annotations

import platform
import re
import sys

PREFIX = "# Platform: "


def this_platform() -> str:
    """e.g. 'Python 3.11 Linux x86_64': the parts a wheel's tags depend on."""
    major, minor, _ = platform.python_version_tuple()
    return f"Python {major}.{minor} {platform.system()} {platform.machine()}"


def locked_platform(lock_text: str) -> str | None:
    match = re.search(f"^{re.escape(PREFIX)}(.+)$", lock_text, re.MULTILINE)
    return match.group(1).strip() if match else None


def main(argv: list[str]) -> int:
    if argv[:1] == ["header"]:
        print(PREFIX + this_platform())
        return 0
    if len(argv) == 2 and argv[0] == "check":
        with open(argv[1], encoding="utf-8") as file:
            locked = locked_platform(file.read())
        if locked is not None and locked != this_platform():
            print(f"{argv[1]} was resolved for {locked}, this is {this_platform()}: run `make lock` to resolve one "
                  f"for this machine, or `make PYTHON=<a python of the locked version>`", file=sys.stderr)
            return 2
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
