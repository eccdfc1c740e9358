"""`make venv` and `make host-up` on a fresh Debian 12 machine with nothing done before (issue 20):
the machine of conftest.py, as the issue found `make up` failing ("ensurepip is not available").

Each step runs once, in this order, in the same container (each fixture needs the one before); the
tests read what it did. Docker's engine cannot start in an unprivileged container: `make host-up` must
use the engine that answers (this machine's, through DOCKER_HOST) and start none; with no engine
reachable it must try dockerd and say at once why that failed.
"""

import re
import subprocess

import pytest
from docker_container import Container, Run
from fresh_machine import CLONE, HOST_ENGINE_IN_CONTAINER, README_PACKAGES, REPO

# What `make up` needs on the host beyond the virtualenv (the list).
UP_NEEDS = ["docker.io", "debootstrap", "iptables"]
# A run that finds everything in place only asks dpkg: well under a second, plus `docker exec`.
NOTHING_TO_DO_SECONDS = 5
# bootstrap-host waits up to 60 s for an engine that is still starting, not for one that has exited.
DOCKERD_GAVE_UP_SECONDS = 20
# Assertion messages are str(run), the whole report: pytest shortens the repr of any other object.


def said_installing(run: Run) -> list[str]:
    """The packages bootstrap-host said it installs."""
    return [
        package
        for line in run.stdout.splitlines()
        if line.startswith("bootstrap-host: installing ")
        for package in line.split()[2:]
    ]


def not_installed(container: Container, packages: list[str]) -> list[str]:
    run = container.run(
        'for p in "$@"; do [ "$(dpkg-query -W -f=\'${Status}\' "$p" 2>/dev/null)" = "install ok installed" ]'
        ' || echo "$p"; done',
        args=packages,
    )
    assert run.returncode == 0, str(run)
    return run.stdout.split()


def pinned(name: str) -> str:
    pins = dict(
        line.split("==", 1)
        for line in (REPO / "requirements.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    return pins[name]


@pytest.fixture(scope="module")
def venv_before_bootstrap(fresh_debian) -> Run:
    return fresh_debian.run("python3 -m venv /tmp/venv-probe")


@pytest.fixture(scope="module")
def make_venv(fresh_debian, venv_before_bootstrap) -> Run:
    return fresh_debian.run("make venv", workdir=CLONE)


@pytest.fixture(scope="module")
def venv_again(fresh_debian, make_venv) -> tuple[Run, Run]:
    return (
        fresh_debian.run("scripts/bootstrap-host venv", workdir=CLONE),
        fresh_debian.run("make venv", workdir=CLONE),
    )


@pytest.fixture(scope="module")
def host_up(fresh_debian, venv_again) -> Run:
    return fresh_debian.run("make host-up", env={"DOCKER_HOST": HOST_ENGINE_IN_CONTAINER}, workdir=CLONE)


@pytest.fixture(scope="module")
def host_up_without_engine(fresh_debian, host_up) -> Run:
    return fresh_debian.run("scripts/bootstrap-host up", workdir=CLONE)


def test_the_fresh_machine_cannot_make_a_virtualenv(fresh_debian, venv_before_bootstrap):
    assert not not_installed(fresh_debian, README_PACKAGES)
    assert not_installed(fresh_debian, ["python3-venv", *UP_NEEDS]) == ["python3-venv", *UP_NEEDS]
    assert venv_before_bootstrap.returncode != 0, str(venv_before_bootstrap)
    message = " ".join(venv_before_bootstrap.output.split())  # venv wraps its lines
    assert "ensurepip is not available" in message, str(venv_before_bootstrap)


def test_make_venv_installs_the_missing_packages_and_says_which(fresh_debian, make_venv):
    assert make_venv.returncode == 0, str(make_venv)
    installing = said_installing(make_venv)
    assert "python3-venv" in installing, str(make_venv)
    assert not set(installing) & set(README_PACKAGES), f"reinstalls what is there:\n{make_venv}"
    assert not not_installed(fresh_debian, installing)


def test_the_virtualenv_runs_the_pinned_ansible_and_molecule(fresh_debian, make_venv):
    ansible = fresh_debian.run(".venv/bin/ansible-playbook --version", workdir=CLONE)
    assert ansible.returncode == 0, str(ansible)
    assert f"[core {pinned('ansible-core')}]" in ansible.stdout.splitlines()[0], str(ansible)
    # molecule calls ansible-config: it needs the virtualenv on PATH, as the Makefile puts it.
    molecule = fresh_debian.run(f"PATH={CLONE}/.venv/bin:$PATH molecule --version", workdir=CLONE)
    assert molecule.returncode == 0, str(molecule)
    assert molecule.stdout.startswith(f"molecule {pinned('molecule')} "), str(molecule)
    services = fresh_debian.run(".venv/bin/python -c 'import shoplab.serve'", workdir=CLONE)
    assert services.returncode == 0, str(services)


def test_a_second_make_venv_installs_nothing_and_says_nothing(venv_again):
    bootstrap, make = venv_again
    assert bootstrap.returncode == 0, str(bootstrap)
    assert bootstrap.output == "", str(bootstrap)
    assert bootstrap.seconds < NOTHING_TO_DO_SECONDS, str(bootstrap)
    assert make.returncode == 0, str(make)
    assert re.search(r"Nothing to be done for .venv.", make.output), str(make)


def test_host_up_installs_docker_debootstrap_and_iptables(fresh_debian, host_up):
    assert host_up.returncode == 0, str(host_up)
    installing = said_installing(host_up)
    assert set(UP_NEEDS) <= set(installing), str(host_up)
    assert "python3-venv" not in installing, f"reinstalls what make venv installed:\n{host_up}"
    assert not not_installed(fresh_debian, installing)


def test_host_up_uses_the_engine_that_answers_and_starts_none(fresh_debian, host_up):
    assert "starting the Docker engine" not in host_up.output, str(host_up)
    processes = fresh_debian.run("cat /proc/[0-9]*/comm")
    assert "dockerd" not in processes.stdout.split(), str(processes)
    engine_id = "docker info --format '{{.ID}}'"
    seen_inside = fresh_debian.run(engine_id, env={"DOCKER_HOST": HOST_ENGINE_IN_CONTAINER})
    assert seen_inside.returncode == 0, str(seen_inside)
    this_machine = subprocess.run(engine_id, shell=True, capture_output=True, text=True, check=True)
    assert seen_inside.stdout.strip() == this_machine.stdout.strip() != "", str(seen_inside)


def test_host_up_says_at_once_why_no_engine_could_start(host_up_without_engine):
    run = host_up_without_engine
    assert run.returncode != 0, str(run)
    assert said_installing(run) == [], str(run)
    assert "bootstrap-host: starting the Docker engine (dockerd" in run.stdout, str(run)
    assert "bootstrap-host: dockerd exited without answering" in run.stderr, str(run)
    assert run.seconds < DOCKERD_GAVE_UP_SECONDS, str(run)
