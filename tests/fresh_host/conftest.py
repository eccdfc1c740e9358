"""A fresh Debian 12 machine as a newcomer starts from: a container from the local debootstrap base with
only what the README asks for (python3, make, git; root) and a clone of the committed tree.

It reaches Debian's mirror but not PyPI, so pip installs from wheels built on this machine
(PIP_NO_INDEX, PIP_FIND_LINKS): the one thing it does differently from a newcomer's machine. This
machine's Docker engine is mounted at a path of its own, so that no engine answers at Docker's default
path unless a command is pointed at it (DOCKER_HOST).
"""

import os
import secrets
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from docker_container import Container
from fresh_machine import (
    BASE_IMAGE,
    BUILD,
    BUNDLE_IN_CONTAINER,
    CLONE,
    HOST_DOCKER_SOCKET,
    HOST_ENGINE_IN_CONTAINER,
    README_PACKAGES,
    REPO,
    WHEELS_IN_CONTAINER,
)
from offline_wheels import ensure_wheelhouse


@pytest.fixture(scope="session")
def base_image() -> str:
    done = subprocess.run(
        [
            Path(sys.executable).with_name("ansible-playbook"),
            "playbooks/debian_base_image.yml",
            *("-e", f"docker_images_local_debian={BASE_IMAGE}"),
        ],
        cwd=REPO,
        env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, f"building {BASE_IMAGE} failed:\n{done.stdout}{done.stderr}"
    return BASE_IMAGE


@pytest.fixture(scope="session")
def wheelhouse() -> Path:
    BUILD.mkdir(parents=True, exist_ok=True)
    return ensure_wheelhouse(REPO, BUILD / "wheels")


@pytest.fixture(scope="session")
def repo_bundle(tmp_path_factory) -> Path:
    """The committed tree (HEAD) as a file `git clone` reads."""
    changed = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if changed:
        warnings.warn(f"uncommitted changes are not in the clone under test:\n{changed}", stacklevel=1)
    bundle = tmp_path_factory.mktemp("repo") / "shoplab.bundle"
    subprocess.run(["git", "-C", str(REPO), "bundle", "create", "--quiet", str(bundle), "HEAD"], check=True)
    return bundle


@pytest.fixture(scope="module")
def fresh_debian(base_image, wheelhouse, repo_bundle):
    assert HOST_DOCKER_SOCKET.is_socket(), f"no Docker engine socket at {HOST_DOCKER_SOCKET}"
    container = Container(f"shoplab-bootstrap-test-{secrets.token_hex(4)}")
    try:
        container.start(
            base_image,
            [
                "--volume", f"{wheelhouse}:{WHEELS_IN_CONTAINER}:ro",
                "--volume", f"{repo_bundle}:{BUNDLE_IN_CONTAINER}:ro",
                "--volume", f"{HOST_DOCKER_SOCKET}:{HOST_ENGINE_IN_CONTAINER.removeprefix('unix://')}",
                "--env", "PIP_NO_INDEX=1",
                "--env", f"PIP_FIND_LINKS={WHEELS_IN_CONTAINER}",
            ],
        )  # fmt: skip
        readme = container.run(
            f"apt-get update -qq && apt-get install -y -qq {' '.join(README_PACKAGES)}",
            env={"DEBIAN_FRONTEND": "noninteractive"},
        )
        assert readme.returncode == 0, str(readme)
        clone = container.run(f"git clone -q -c advice.detachedHead=false {BUNDLE_IN_CONTAINER} {CLONE}")
        assert clone.returncode == 0, str(clone)
        yield container
    finally:
        container.remove()
