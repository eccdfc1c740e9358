"""What the fresh machine is: its image, what it starts with, and where things are in it."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# The wheelhouse's cache (git-ignored).
BUILD = REPO / "build" / "bootstrap-test"
# The local debootstrap base (no registry can be reached); playbooks/debian_base_image.yml builds it.
BASE_IMAGE = "shoplab/debian:bookworm-local"
# What the README asks a newcomer to have.
README_PACKAGES = ["python3", "make", "git"]
CLONE = "/root/shoplab"
BUNDLE_IN_CONTAINER = "/shoplab.bundle"
WHEELS_IN_CONTAINER = "/wheels"
HOST_DOCKER_SOCKET = Path("/var/run/docker.sock")
# This machine's engine, away from Docker's default path: only a command given it as DOCKER_HOST sees it.
HOST_ENGINE_IN_CONTAINER = "unix:///run/host-docker.sock"
