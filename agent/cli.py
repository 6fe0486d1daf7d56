"""The command line: parse options, build the configuration, call the app, map errors to exit codes."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click

from agent import __version__
from agent.errors import AgentError

F = TypeVar("F", bound=Callable[..., Any])
ENV = "INTEL_GPU_AGENT_"


def option(*names: str, env: str, **kwargs: Any) -> Callable[[F], F]:
    """A click option that is also read from INTEL_GPU_AGENT_<env>."""
    kwargs.setdefault("show_envvar", True)
    return click.option(*names, envvar=ENV + env, **kwargs)


json_option = option("--json", "as_json", env="JSON", is_flag=True, help="Machine-readable output.")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="intel-gpu-agent")
@option(
    "--host-root",
    env="HOST_ROOT",
    default="/",
    show_default=True,
    help="Where the host's / is visible (/host in the agent's pod).",
)
@option(
    "--log-format",
    env="LOG_FORMAT",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "json", "console"]),
    help="auto: console on a terminal, JSON otherwise.",
)
@option(
    "--log-level",
    env="LOG_LEVEL",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
@option(
    "--recipes-dir",
    env="RECIPES_DIR",
    default=None,
    help="Folder of driver recipes (default: the shipped ones).",
)
@click.pass_context
def cli(ctx: click.Context, host_root: str, log_format: str, log_level: str, recipes_dir: str | None) -> None:
    """Build, load, verify and unload the Intel i915 backport driver on this node."""
    from agent import logs
    from agent.app import App
    from agent.config import make_global

    config = make_global(host_root, log_format, log_level, recipes_dir)
    logs.configure(fmt=config.log_format, level=config.log_level)
    ctx.obj = App(config=config)


@cli.command()
@json_option
@click.pass_obj
def detect(app: Any, as_json: bool) -> None:
    """Kernel, OS, Intel GPUs, loaded i915, firmware path and module-signing policy of this node."""
    from agent import report

    facts = app.detect()
    click.echo(report.dumps(report.facts_json(facts)) if as_json else report.facts_text(facts))


no_compat_fixes_option = option(
    "--no-compat-fixes",
    env="NO_COMPAT_FIXES",
    is_flag=True,
    help="Build the release as published, without the project's kernel compatibility fixes.",
)


@cli.command()
@option("--recipe", env="RECIPE", default=None, help="A recipe name or a path to a recipe TOML (default: all).")
@no_compat_fixes_option
@json_option
@click.pass_obj
def check(app: Any, recipe: str | None, no_compat_fixes: bool, as_json: bool) -> None:
    """Whether each driver release supports this node, and why, with the compat fixes its build needs.
    Exit 3 when none does."""
    from agent import report
    from agent.errors import UnsupportedHostError

    result = app.check(recipe, compat_fixes=not no_compat_fixes)
    if as_json:
        click.echo(
            report.dumps(
                {
                    "kernel": result.facts.kernel,
                    "os": result.facts.os,
                    "gpus": result.facts.gpus,
                    "verdicts": result.verdicts,
                    "chosen": result.chosen.recipe if result.chosen else None,
                    "why": result.why,
                    "notes": result.notes,
                    "recipe_errors": [str(e) for e in result.recipe_errors],
                }
            )
        )
    else:
        click.echo(report.verdicts_text(result.verdicts, result.chosen, result.why))
        for note in result.notes:
            click.echo(f"note: {note}")
        for error in result.recipe_errors:
            click.echo(f"error: {error}", err=True)
    if not result.supported:
        facts = result.facts
        raise UnsupportedHostError(
            f"no driver release supports this node (kernel {facts.kernel.release}, {facts.os.pretty_name}, "
            f"{len(facts.gpus)} Intel GPU(s)); the reasons are listed per release"
        )


@cli.command()
@json_option
@click.pass_obj
def recipes(app: Any, as_json: bool) -> None:
    """The driver releases this agent knows. Exit 2 if any recipe file is broken."""
    from agent import report
    from agent.errors import UsageError

    found = app.recipes()
    if as_json:
        click.echo(report.dumps({"recipes": found.recipes, "errors": [str(e) for e in found.errors]}))
    else:
        click.echo(report.recipes_text(found.recipes, found.errors))
    if found.errors:
        raise UsageError(f"{len(found.errors)} recipe file(s) are broken: " + "; ".join(str(e) for e in found.errors))


@cli.command()
@option("--recipe", env="RECIPE", required=True, help="A recipe name or a path to a recipe TOML.")
@option("--kernel", env="KERNEL", required=True, help="Kernel release to build for (never taken from uname).")
@option("--out", env="OUT", required=True, help="Driver tree folder to create or update.")
@option("--headers", env="HEADERS", default=None, help="Kernel headers folder (default /lib/modules/KVER/build).")
@option("--source", env="SOURCE", default=None, help="Driver source: URL, tarball or folder (default: recipe).")
@option("--source-sha256", env="SOURCE_SHA256", default=None, help="Pin for a --source URL or tarball.")
@option("--firmware", env="FIRMWARE", default=None, help="Firmware: URL, tarball or folder (default: recipe).")
@option("--firmware-sha256", env="FIRMWARE_SHA256", default=None, help="Pin for a --firmware URL or tarball.")
@option(
    "--firmware-files-url",
    env="FIRMWARE_FILES_URL",
    default=None,
    help="A mirror of the firmware repository's raw files: URL with {file} (and {tag}); default: the recipe's.",
)
@no_compat_fixes_option
@option(
    "--jobs",
    env="JOBS",
    type=int,
    default=None,
    help="Parallel make jobs (default: what the CPUs and the memory limit allow).",
)
@option("--cache-dir", env="CACHE_DIR", default=None, help="Downloads and unpacked sources (default <state>/cache).")
@option("--work-dir", env="WORK_DIR", default=None, help="Build folders and logs (default <cache-dir>/build).")
@option("--http-proxy", env="HTTP_PROXY", default=None, help="Proxy for http:// (default: HTTP_PROXY).")
@option("--https-proxy", env="HTTPS_PROXY", default=None, help="Proxy for https:// (default: HTTPS_PROXY).")
@option("--no-proxy", env="NO_PROXY", default=None, help="Hosts reached directly (default: NO_PROXY).")
@option("--ca-bundle", env="CA_BUNDLE", default=None, help="Extra CA certificates to trust (TLS-intercepting proxies).")
@option("--sign-key", env="SIGN_KEY", default=None, help="Private key to sign modules with (Secure Boot).")
@option("--sign-cert", env="SIGN_CERT", default=None, help="Certificate of --sign-key.")
@option(
    "--download-timeout",
    env="DOWNLOAD_TIMEOUT",
    type=float,
    default=None,
    help="Seconds one download may take, retries included (default 1800); then exit 4.",
)
@json_option
@click.pass_obj
def build(app: Any, /, as_json: bool, **options: Any) -> None:
    """Build a driver release for one kernel into a driver tree. Exit 5 when it does not build."""
    from agent.build.config import make_build_config
    from agent.build.report import result_json, result_text

    config = make_build_config(app.host, **options)
    result = app.build(config)
    click.echo(result_json(result) if as_json else result_text(result))


# --- lifecycle (issue 4): run, load, unload, status ------------------------------------------------
def lifecycle_options(*, daemon: bool = False) -> Callable[[F], F]:
    """The options the lifecycle commands share (the Helm chart sets them as INTEL_GPU_AGENT_*)."""
    opts = [
        option("--driver-tree", env="DRIVER_TREE", default=None, help="A tree made by `build` (or one per kernel)."),
        option("--recipe", env="RECIPE", default=None, help="Recipe name or TOML; built here if no tree fits."),
        option("--state-dir", env="STATE_DIR", default=None, help="Host folder of the journal and build cache."),
        option(
            "--ca-bundle",
            env="CA_BUNDLE",
            default=None,
            help="Extra CA certificates for a build's downloads (TLS-intercepting proxies).",
        ),
        option(
            "--unload-deadline",
            env="UNLOAD_DEADLINE",
            default=60.0,
            show_default=True,
            type=float,
            help="Seconds to retry a busy unload before exiting 4.",
        ),
    ]
    if daemon:
        opts += [
            option(
                "--mode",
                env="MODE",
                default="load",
                show_default=True,
                type=click.Choice(["load", "monitor"]),
                help="monitor: KMM loads the driver; only check, verify and serve.",
            ),
            option("--listen", env="LISTEN", default="0.0.0.0:9480", show_default=True, help="HOST:PORT to serve."),
            option("--node-name", env="NODE_NAME", default=None, help="Node to label via the API server."),
            option(
                "--on-stop",
                env="ON_STOP",
                default="auto",
                show_default=True,
                type=click.Choice(["auto", "unload", "keep"]),
                help="SIGTERM: auto unloads only when the cluster wants the driver gone (DaemonSet deleted, node "
                "out of scope) and hands it over to the next agent on a restart; outside a cluster it unloads.",
            ),
            option(
                "--upgrade-cordon/--no-upgrade-cordon",
                env="UPGRADE_CORDON",
                default=True,
                show_default=True,
                help="A driver change cordons the node first (uncordoned after, only if the agent cordoned it).",
            ),
            option(
                "--upgrade-evict/--no-upgrade-evict",
                env="UPGRADE_EVICT",
                default=True,
                show_default=True,
                help="A driver change evicts the GPU's pods (PDBs honoured); --no-upgrade-evict waits for them.",
            ),
            option(
                "--upgrade-timeout",
                env="UPGRADE_TIMEOUT",
                default=600.0,
                show_default=True,
                type=float,
                help="Seconds the GPU's users may take to go before the node is 'blocked' (old driver kept).",
            ),
        ]

    def decorate(f: F) -> F:
        for opt in reversed(opts):
            f = opt(f)
        return f

    return decorate


def _lifecycle(app: Any, daemon: bool = False, **options: Any) -> Any:
    from agent.lifecycle.config import make_lifecycle_config

    return app.lifecycle(make_lifecycle_config(**options), daemon=daemon)


@cli.command()
@lifecycle_options(daemon=True)
@click.pass_context
def run(ctx: click.Context, /, **options: Any) -> None:
    """Load, verify and serve until SIGTERM, then put the node back as it was (the DaemonSet's command)."""
    ctx.exit(_lifecycle(ctx.obj, daemon=True, **options).run())


@cli.command()
@lifecycle_options()
@json_option
@click.pass_obj
def load(app: Any, /, as_json: bool, **options: Any) -> None:
    """Load and verify the driver once and leave it loaded. Exit 3 unsupported, 4 busy, 5 failed."""
    from agent import report

    outcome = _lifecycle(app, **options).load()
    if as_json:
        click.echo(report.dumps(outcome))
    else:
        click.echo(
            f"driver loaded and verified: {outcome.changes} host change(s)"
            + (" (already in place)" if outcome.warm else "")
            + f", {outcome.verification.gpus} GPU(s), render nodes "
            + (", ".join(outcome.verification.render_nodes) or "-")
            + f", {outcome.seconds:.2f}s"
        )


@cli.command()
@lifecycle_options()
@click.pass_obj
def unload(app: Any, /, **options: Any) -> None:
    """Undo everything the journal records, in reverse; a busy module is never forced (exit 4)."""
    undone = _lifecycle(app, mode="monitor", **options).unload()
    click.echo(f"unloaded: {undone} change(s) undone" if undone else "nothing to undo: no journal on this host")


@cli.command()
@lifecycle_options()
@json_option
@click.pass_obj
def status(app: Any, /, as_json: bool, **options: Any) -> None:
    """What the journal holds and what the host says: phase, changes, loaded modules, firmware path."""
    from agent import report

    data = _lifecycle(app, mode="monitor", **options).status()
    if as_json:
        click.echo(report.dumps(data))
        return
    click.echo(f"journal:        {data['journal']} (phase {data['phase']})")
    click.echo(f"driver:         {data['recipe'] or '-'} for {data['kernel'] or '-'} from {data['tree'] or '-'}")
    click.echo(f"firmware path:  {data['firmware_path']!r}")
    for name, module in data["loaded"].items():
        click.echo(f"loaded:         {name} srcversion {module['srcversion']} refcount {module['refcount']}")
    for change in data["changes"]:
        detail = " ".join(f"{k}={v}" for k, v in change.items() if k not in ("kind", "status"))
        click.echo(f"change:         {change['kind']} [{change['status']}] {detail}")
    for change in data.get("forgotten", []):
        click.echo(f"gone at reboot: {change['kind']} {' '.join(f'{k}={v}' for k, v in change.items() if k != 'kind')}")
    for change in data.get("unknown_changes", []):
        click.echo(f"unknown kind:   {change['kind']} (change {change['index']}): written by a newer agent; not undone")


def main(argv: list[str] | None = None) -> int:
    """Entry point: exit codes follow DESIGN.md (0 ok, 1 bug, 2 usage, 3 unsupported, 4 transient, 5 build)."""
    try:
        # Without standalone mode click returns ctx.exit()'s code instead of raising it (`run` uses it).
        code = cli.main(args=argv, prog_name="intel-gpu-agent", standalone_mode=False)
    except AgentError as e:
        click.echo(f"error: {e}", err=True)
        return e.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 4
    except click.ClickException as e:
        e.show()
        return 2
    except click.exceptions.Exit as e:
        return int(e.exit_code)
    except Exception:
        import traceback

        traceback.print_exc()
        click.echo("error: internal error (a bug in intel-gpu-agent): please report it with the trace above", err=True)
        return 1
    return code if isinstance(code, int) else 0


def entry() -> NoReturn:
    """The console script and `python -m agent`: ``main()``, then exit at once with its code.

    When main() returns, the command is over: files closed, threads stopped, the journal written. Tearing the
    interpreter down module by module changes nothing on the host but takes longer than some commands on a
    slow node (1.3 s in the emulated VM, where it doubled SIGTERM-to-exit), so the streams are flushed and the
    process ends with os._exit; under a tracer or profiler it exits normally, so they can write their data.
    """
    code = main()
    if sys.gettrace() is not None or sys.getprofile() is not None:
        sys.exit(code)  # under coverage or a profiler (`python -m cProfile -m agent`): they write their data at exit
    if "logging" in sys.modules:
        sys.modules["logging"].shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe (`detect | head`): nothing left to tell
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
