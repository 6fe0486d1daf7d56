"""The command line: parse options, build the configuration, call the app, map errors to exit codes."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

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


@cli.command()
@option("--recipe", env="RECIPE", default=None, help="A recipe name or a path to a recipe TOML (default: all).")
@json_option
@click.pass_obj
def check(app: Any, recipe: str | None, as_json: bool) -> None:
    """Whether each driver release supports this node, and why. Exit 3 when none does."""
    from agent import report
    from agent.errors import UnsupportedHostError

    result = app.check(recipe)
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
@option("--jobs", env="JOBS", type=int, default=None, help="Parallel make jobs (default: CPUs available).")
@option("--cache-dir", env="CACHE_DIR", default=None, help="Downloads and unpacked sources (default <state>/cache).")
@option("--work-dir", env="WORK_DIR", default=None, help="Build folders and logs (default <cache-dir>/build).")
@option("--http-proxy", env="HTTP_PROXY", default=None, help="Proxy for http:// (default: HTTP_PROXY).")
@option("--https-proxy", env="HTTPS_PROXY", default=None, help="Proxy for https:// (default: HTTPS_PROXY).")
@option("--no-proxy", env="NO_PROXY", default=None, help="Hosts reached directly (default: NO_PROXY).")
@option("--ca-bundle", env="CA_BUNDLE", default=None, help="Extra CA bundle for TLS (corporate proxies).")
@option("--sign-key", env="SIGN_KEY", default=None, help="Private key to sign modules with (Secure Boot).")
@option("--sign-cert", env="SIGN_CERT", default=None, help="Certificate of --sign-key.")
@json_option
@click.pass_obj
def build(app: Any, /, as_json: bool, **options: Any) -> None:
    """Build a driver release for one kernel into a driver tree. Exit 5 when it does not build."""
    from agent.build.config import make_build_config
    from agent.build.report import result_json, result_text

    config = make_build_config(app.host, **options)
    result = app.build(config)
    click.echo(result_json(result) if as_json else result_text(result))


def main(argv: list[str] | None = None) -> int:
    """Entry point: exit codes follow DESIGN.md (0 ok, 1 bug, 2 usage, 3 unsupported, 4 transient, 5 build)."""
    try:
        cli.main(args=argv, prog_name="intel-gpu-agent", standalone_mode=False)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
