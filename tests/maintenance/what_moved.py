"""`make upgrade-check`: each pinned direct dependency beside the newest release installed in this venv."""

import re
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def pins(requirements: Path) -> dict[str, str]:
    found = (re.match(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;#]+)", line) for line in requirements.read_text().splitlines())
    return {m[1].split("[")[0]: m[2] for m in found if m}


def main() -> int:
    moved = 0
    for name, pinned in pins(Path(sys.argv[1])).items():
        try:
            newest = version(name)
        except PackageNotFoundError:
            newest = "not installed"
        moved += newest != pinned
        print(f"{name:20} {pinned:12} -> {newest}" if newest != pinned else f"{name:20} {pinned:12} (newest)")
    print(f"{moved} pin(s) behind the newest release" if moved else "every pin is the newest release")
    return 0


if __name__ == "__main__":
    sys.exit(main())
