"""Running the recipe's build steps: placeholders, environment, log file, progress and what the output says."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from agent.errors import UsageError
from agent.host.runner import Runner
from agent.logs import get_logger

log = get_logger(__name__)

PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
# kbuild's quiet output: "  CC [M]  /path/foo.o"; one line per object compiled.
OBJECT = re.compile(r"^\s+CC( \[M\])?\s+\S+\.o$")
# gcc/clang: "/path/file.c:124:15: error: too few arguments ..." (LC_ALL=C keeps the quotes ASCII).
COMPILER_ERROR = re.compile(r"^(?P<file>[^\s:][^:]*):(?P<line>\d+):(?:\d+:)? (?:fatal )?error: (?P<message>.+)$")
# make's own failures ("make[1]: *** No rule to make target 'x'.  Stop."), for builds that fail before compiling.
MAKE_ERROR = re.compile(r"^\S*make(?:\[\d+\])?: \*\*\* (?P<message>.+)$")
UNDEFINED = re.compile(r'^(?:WARNING|ERROR): modpost: "(?P<symbol>[^"]+)" \[(?P<module>[^\]]+)\] undefined!')


@dataclass(frozen=True)
class CompilerError:
    """The first error the compiler reported."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{Path(self.file).name}:{self.line}: error: {self.message}"


@dataclass
class BuildOutput:
    """What the build printed that matters: objects compiled, the first error, unresolved symbols."""

    objects: int = 0
    first_error: CompilerError | None = None
    first_make_error: str = ""
    undefined: dict[str, list[str]] = field(default_factory=dict)  # symbol -> modules
    tail: list[str] = field(default_factory=list)

    def feed(self, line: str) -> None:
        if OBJECT.match(line):
            self.objects += 1
            return
        if self.first_error is None:
            match = COMPILER_ERROR.match(line)
            if match:
                self.first_error = CompilerError(match["file"], int(match["line"]), match["message"].strip())
        if not self.first_make_error:
            make_error = MAKE_ERROR.match(line)
            if make_error:
                self.first_make_error = make_error["message"].strip()
        undefined = UNDEFINED.match(line)
        if undefined:
            modules = self.undefined.setdefault(undefined["symbol"], [])
            module = Path(undefined["module"]).name
            if module not in modules:
                modules.append(module)
        self.tail = [*self.tail[-19:], line]


class Progress:
    """Objects compiled and elapsed time: a status line on a terminal, a log event every ``interval`` otherwise."""

    def __init__(
        self,
        *,
        label: str,
        stream: TextIO | None = None,
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._label = label
        self._stream = stream if stream is not None else sys.stderr
        self._tty = self._stream.isatty()
        self._interval = 0.2 if self._tty else interval
        self._clock = clock
        self._started = clock()
        self._last = self._started
        self._shown = False

    def update(self, output: BuildOutput) -> None:
        now = self._clock()
        if now - self._last < self._interval:
            return
        self._last = now
        seconds = round(now - self._started, 1)
        if self._tty:
            self._stream.write(f"\r{self._label}: {output.objects} objects compiled, {seconds:.1f} s ")
            self._stream.flush()
            self._shown = True
        else:
            log.info("build_progress", build=self._label, objects=output.objects, seconds=seconds)

    def finish(self) -> None:
        if self._shown:
            self._stream.write("\n")
            self._stream.flush()


def expand(step: Sequence[str], values: Mapping[str, str]) -> list[str]:
    """An argv with {kernel}, {headers}, {klib}, {jobs}, {src} and {install} replaced; other names are errors."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise UsageError(f"build step {' '.join(step)}: unknown placeholder {{{name}}}")
        return values[name]

    return [PLACEHOLDER.sub(replace, arg) for arg in step]


def run_steps(
    runner: Runner,
    steps: Sequence[Sequence[str]],
    *,
    cwd: Path,
    env: Mapping[str, str],
    values: Mapping[str, str],
    log_file: Path,
    progress: Progress,
    timeout: float,
    output: BuildOutput,
) -> None:
    """Run each step in ``cwd``; output goes to ``log_file`` and ``output``. Raises the runner's errors.

    The log is written line by line as make prints (line-buffered), so `tail -f` follows a long build
    and a killed build keeps everything up to the kill.
    """
    with log_file.open("a", encoding="utf-8", buffering=1) as handle:

        def on_line(line: str) -> None:
            handle.write(line + "\n")
            output.feed(line)
            progress.update(output)

        try:
            for step in steps:
                argv = expand(step, values)
                handle.write(f"$ {' '.join(argv)}\n")
                log.info("build_step", argv=argv)
                runner.run(argv, cwd=cwd, env=env, timeout=timeout, on_line=on_line, quiet=True)
        finally:
            progress.finish()
