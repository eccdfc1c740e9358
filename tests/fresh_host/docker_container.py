"""A throw-away Docker container and the commands run in it, each with its output, status and time."""

import subprocess
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Run:
    command: str
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def __str__(self) -> str:
        return (
            f"$ {self.command}\n(exit {self.returncode} after {self.seconds:.1f} s)\n"
            f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}"
        )


class Container:
    def __init__(self, name: str):
        self.name = name

    def start(self, image: str, docker_args: list[str]) -> None:
        subprocess.run(
            ["docker", "run", "--detach", "--name", self.name, *docker_args, image, "sleep", "infinity"],
            check=True,
            capture_output=True,
        )

    def run(
        self, command: str, env: dict[str, str] | None = None, workdir: str = "/", args: list[str] = ()
    ) -> Run:
        """Run a bash command line as root in the container; `args` are its "$@"."""
        env_args = [arg for key, value in (env or {}).items() for arg in ("--env", f"{key}={value}")]
        started = time.monotonic()
        done = subprocess.run(
            [
                "docker",
                "exec",
                "--workdir",
                workdir,
                *env_args,
                self.name,
                "bash",
                "-c",
                command,
                "bash",
                *args,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        return Run(command, done.returncode, done.stdout, done.stderr, time.monotonic() - started)

    def remove(self) -> None:
        """Remove the container, also one that was created but failed to start."""
        subprocess.run(["docker", "rm", "--force", self.name], capture_output=True, check=False)
