"""The agent's error tree: every failure a user can meet, each class carrying its exit code."""

from __future__ import annotations


class AgentError(Exception):
    """Base of every error the agent reports; never raised directly.

    The message says what failed, on what, and what to do. ``exit_code`` is the process exit code
    the CLI maps the error to (DESIGN.md decision 7).
    """

    exit_code = 1
    transient = False

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}; {self.hint}"
        return self.message


class UsageError(AgentError):
    """Bad command-line options, environment variables or configuration (exit 2)."""

    exit_code = 2


class RecipeError(UsageError):
    """A driver recipe file is malformed: names the file, the key and the problem (exit 2)."""

    def __init__(self, path: str, key: str, problem: str) -> None:
        super().__init__(f"recipe {path}: {key}: {problem}")
        self.path = path
        self.key = key
        self.problem = problem


class HostReadError(AgentError):
    """A host file the agent must read is missing or unreadable (partial mounts in containers)."""

    exit_code = 2


class UnsupportedHostError(AgentError):
    """The node cannot run this driver: kernel, OS, GPUs or signing policy (permanent, exit 3)."""

    exit_code = 3


class TransientError(AgentError):
    """Worth retrying later: module busy, network down, server errors (exit 4)."""

    exit_code = 4
    transient = True


class ModuleBusyError(TransientError):
    """A module cannot be unloaded because something holds it; the message names the holders."""


class DownloadError(TransientError):
    """A download failed after its retries (network, server errors)."""


class HostWriteError(AgentError):
    """A host change could not be made: read-only or forbidden file system. Rolled back (exit 2)."""

    exit_code = 2


class HostFullError(TransientError):
    """A host file system is full (ENOSPC, EDQUOT): the change was rolled back; retry once there is room."""


class JournalError(UsageError):
    """The journal cannot be read or holds what this agent cannot undo: nothing was touched (exit 2)."""


class IntegrityError(AgentError):
    """A file's sha256 differs from the pinned one: never used, never extracted (exit 2)."""

    exit_code = 2


class BuildError(AgentError):
    """The driver did not build for this kernel and recipe (permanent for the pair, exit 5)."""

    exit_code = 5


class LoadError(AgentError):
    """The driver did not load or verify on this kernel; the host was rolled back (permanent, exit 5)."""

    exit_code = 5


class CommandError(AgentError):
    """An external command failed: carries argv, exit code and the tail of its output."""

    exit_code = 1

    def __init__(self, argv: list[str], returncode: int, output_tail: str, *, timed_out: bool = False) -> None:
        what = "timed out" if timed_out else f"exited with {returncode}"
        tail = output_tail.strip()
        message = f"command {' '.join(argv)} {what}"
        if tail:
            message += f": {tail}"
        super().__init__(message)
        self.argv = argv
        self.returncode = returncode
        self.output_tail = output_tail
        self.timed_out = timed_out


class StopRequestedError(AgentError):
    """The agent was asked to stop (SIGTERM/SIGINT) while a long step ran."""

    exit_code = 4
    transient = True
