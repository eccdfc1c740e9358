"""The wheels a fresh machine's `make venv` installs from: its containers reach Debian's mirror, not PyPI.

Built on this machine (which reaches PyPI) from requirements.txt and services/pyproject.toml, cached under
build/ and rebuilt only when those files, the extra requirements or this Python change.
"""

import hashlib
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

# pip resolves markers for this Python, the fresh machine runs Debian's 3.11.2: redis-py needs
# async-timeout below 3.11.3 (as in roles/shoplab_wheelhouse). `pip` too: make venv upgrades it.
EXTRA_REQUIREMENTS = ["async-timeout>=4.0.3", "pip"]


def services_requirements(pyproject: Path) -> list[str]:
    """What `pip install -e 'services[...]'` needs: its build backend, dependencies and every extra."""
    data = tomllib.loads(pyproject.read_text())
    project = data["project"]
    extras = [req for reqs in project.get("optional-dependencies", {}).values() for req in reqs]
    return data["build-system"]["requires"] + project["dependencies"] + extras


def ensure_wheelhouse(repo: Path, dest: Path) -> Path:
    requirements_txt = repo / "requirements.txt"
    services = services_requirements(repo / "services" / "pyproject.toml")
    digest = hashlib.sha256(
        "\n".join([requirements_txt.read_text(), *services, *EXTRA_REQUIREMENTS, sys.version]).encode()
    ).hexdigest()
    stamp = dest.with_name(dest.name + ".digest")
    if dest.is_dir() and stamp.exists() and stamp.read_text() == digest:
        return dest
    # Built aside and moved in place, so an interrupted build is never taken for a complete one.
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(partial)),
            *("-r", str(requirements_txt), *services, *EXTRA_REQUIREMENTS),
        ],
        check=True,
    )
    shutil.rmtree(dest, ignore_errors=True)
    partial.rename(dest)
    stamp.write_text(digest)
    return dest
