"""Runs INSIDE the test VM: KMM's worker procedure on the real kernel, and the agent in monitor mode beside it.

argv: spec.json (kmmlib.WorkerSpec from the rendered chart), the worker pod's /tmp as the init container
left it (copied out of the driver image on the host), the image's tree (manifest, /opt, /firmware) for the
monitor agent, a plan: "full" (scenarios a-d) or "refused" (an image whose load the kernel refuses).

Each worker action runs as the worker container would see the node: its own mount namespace (unshare)
with that /tmp, the node's /lib/modules also at /host/lib/modules, and an /etc/modprobe.d holding only
KMM's softdep.conf. Firmware goes to the node's folder, which the worker pod mounts at the same path.
Stdlib only (and vm.guest): Python is ~25 times slower under emulation.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from vm import guest

SPEC = json.loads(Path(sys.argv[1]).read_text())
WORKER_TMP = Path(sys.argv[2])
IMAGE_TREE = Path(sys.argv[3])
PLAN = sys.argv[4]
REPO = Path(os.environ["KMM_REPO"])
KERNEL = os.uname().release
MAIN = SPEC["module_name"].replace("-", "_")
FIRMWARE_HOST = Path(SPEC["firmware_host_path"])
PORT = 9480
PCI = Path("/sys/bus/pci/devices")
GPU = "0000:00:05.0"
LOGS = Path("/run/kmm-logs")
API = Path("/run/kmm-api")
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")

WORKER_NAMESPACE = """set -e
mount --bind "$WORKER_TMP" /tmp
mkdir -p /host/lib/modules
mount --bind /lib/modules /host/lib/modules
mount -t tmpfs -o mode=0755 softdep /etc/modprobe.d
printf '%s' "$SOFTDEP" > /etc/modprobe.d/softdep.conf
exec "$@"
"""


def marker(text: str) -> str:
    """A line in the kernel log, to slice it by step."""
    Path("/dev/kmsg").write_text(f"kmm-replay: {text}\n")
    return f"kmm-replay: {text}"


def log_since(mark: str) -> list[str]:
    lines = guest.kernel_log()
    starts = [i for i, line in enumerate(lines) if mark in line]
    return lines[starts[-1] :] if starts else lines


def in_worker(argv: list[str]) -> dict[str, Any]:
    """``argv`` as KMM's worker container runs it; its exit code, output and seconds."""
    env = {**os.environ, "WORKER_TMP": str(WORKER_TMP), "SOFTDEP": SPEC["softdep"]}
    started = time.monotonic()
    done = subprocess.run(
        ["unshare", "--mount", "sh", "-c", WORKER_NAMESPACE, "worker", *argv],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    return {"argv": argv, "rc": done.returncode, "stdout": done.stdout, "stderr": done.stderr,
            "seconds": round(time.monotonic() - started, 3)}  # fmt: skip


def in_tree_present(names: list[str]) -> list[str]:
    """The inTreeModulesToRemove whose files the node has (KMM drops the others before ``modprobe -r``)."""
    dep = Path(f"/lib/modules/{KERNEL}/modules.dep").read_text()
    files = {line.split(":", 1)[0].rsplit("/", 1)[-1].split(".ko", 1)[0].replace("-", "_") for line in dep.splitlines()}
    return [n for n in names if n.replace("-", "_") in files]


def firmware_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.is_dir() else []


def worker_load() -> dict[str, Any]:
    """KMM's LoadKmod: in-tree removal, firmware path, firmware copy, modprobe -vd."""
    out: dict[str, Any] = {"mark": marker("worker load")}
    started = time.monotonic()
    present = in_tree_present(SPEC["in_tree_modules_to_remove"])
    out["in_tree_dropped"] = sorted(set(SPEC["in_tree_modules_to_remove"]) - set(present))
    if present:
        out["in_tree"] = in_worker(["modprobe", "-rv", *present])
        if out["in_tree"]["rc"] != 0:
            return out
    if SPEC["set_firmware_class_path"] and guest.read(guest.FIRMWARE_PATH_PARAM) != str(FIRMWARE_HOST):
        guest.set_firmware_path(str(FIRMWARE_HOST))
        out["wrote_firmware_path"] = True
    if SPEC["firmware_path"]:
        copy_started = time.monotonic()
        shutil.copytree(WORKER_TMP / SPEC["firmware_path"].lstrip("/"), FIRMWARE_HOST, dirs_exist_ok=True)
        out["firmware_copy_seconds"] = round(time.monotonic() - copy_started, 3)
    out["modprobe"] = in_worker(SPEC["load_argv"])
    out["seconds"] = round(time.monotonic() - started, 3)
    out["kernel_log"] = log_since(out["mark"])
    return out


def worker_unload() -> dict[str, Any]:
    """KMM's UnloadKmod: modprobe -rvd, then the copied firmware files (not folders) removed."""
    out: dict[str, Any] = {"mark": marker("worker unload")}
    out["modprobe"] = in_worker(SPEC["unload_argv"])
    if SPEC["firmware_path"]:
        source = WORKER_TMP / SPEC["firmware_path"].lstrip("/")
        for relative in firmware_files(source):
            (FIRMWARE_HOST / relative).unlink(missing_ok=True)
    return out


def node() -> dict[str, Any]:
    """What the kernel and the files say."""
    modules = guest.loaded_modules()
    return {
        "modules": sorted(modules),
        "version": guest.read(f"/sys/module/{MAIN}/version"),
        "srcversion": guest.read(f"/sys/module/{MAIN}/srcversion"),
        "parameters": {p.name: guest.read(p) for p in sorted(Path(f"/sys/module/{MAIN}/parameters").glob("*"))},
        "firmware_path": guest.read(guest.FIRMWARE_PATH_PARAM),
        "firmware_files": firmware_files(FIRMWARE_HOST),
        "firmware_dirs": sorted(str(p.relative_to(FIRMWARE_HOST)) for p in FIRMWARE_HOST.rglob("*") if p.is_dir())
        if FIRMWARE_HOST.is_dir()
        else [],
    }


def fake_gpu() -> None:
    """One Flex 170 in a tmpfs PCI view, bound to the main module with a render node (qemu has no Intel GPU)."""
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "fakepci", str(PCI)], check=True)
    device = PCI / GPU
    (device / "drm/card0").mkdir(parents=True)
    (device / "drm/renderD128").mkdir(parents=True)
    for name, value in (("vendor", "0x8086"), ("device", "0x56c0"), ("class", "0x038000"), ("numa_node", "-1")):
        (device / name).write_text(value + "\n")
    driver = PCI / f".drivers/{MAIN}"
    driver.mkdir(parents=True)
    (driver / "module").symlink_to(f"/sys/module/{MAIN}")
    (device / "driver").symlink_to(driver)


def fake_api_server() -> subprocess.Popen[bytes]:
    """The node-label PATCHes the agent sends, recorded by a small HTTPS server (no cluster here)."""
    API.mkdir(parents=True, exist_ok=True)
    SERVICE_ACCOUNT.mkdir(parents=True, exist_ok=True)
    shutil.copy(os.environ["KMM_API_CA"], SERVICE_ACCOUNT / "ca.crt")
    (SERVICE_ACCOUNT / "token").write_text("kmm-replay-token\n")
    server = subprocess.Popen(
        [sys.executable, "-S", os.environ["KMM_API_SERVER"], str(API), os.environ["KMM_API_CERT"],
         os.environ["KMM_API_KEY"], "6443"],
    )  # fmt: skip
    guest.wait_for(lambda: (API / "ready").exists() or server.poll() is not None, timeout=60, what="the API server")
    return server


def labels() -> list[str]:
    path = API / "patches.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line)["metadata"]["labels"]["gpu-driver.intel.com/state"] for line in lines]


def start_monitor() -> subprocess.Popen[bytes]:
    """The chart's kmm-mode DaemonSet command and env; the pod's /host is this node's /."""
    env = {**os.environ, **SPEC["monitor_env"], "INTEL_GPU_AGENT_HOST_ROOT": "/",
           "INTEL_GPU_AGENT_DRIVER_TREE": str(IMAGE_TREE), "INTEL_GPU_AGENT_NODE_NAME": "kmm-node",
           "KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "6443"}  # fmt: skip
    if os.environ.get("KMM_RECIPES_DIR"):
        env["INTEL_GPU_AGENT_RECIPES_DIR"] = os.environ["KMM_RECIPES_DIR"]
    LOGS.mkdir(exist_ok=True)
    out = open(LOGS / "monitor.log", "ab")  # noqa: SIM115 - lives as long as the process
    flags = ["-S"] if sys.flags.no_site else []
    return subprocess.Popen([sys.executable, *flags, "-m", "agent", "run"], cwd=REPO, stdout=out, stderr=out, env=env)


def readyz() -> tuple[int, str]:
    return guest.http_get(f"http://127.0.0.1:{PORT}/readyz")


def metrics() -> dict[str, float]:
    _, text = guest.http_get(f"http://127.0.0.1:{PORT}/metrics")
    out = {}
    for line in text.splitlines():
        if line.startswith("intel_gpu_driver_state{") or line.startswith("intel_gpu_driver_ready "):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def wait_ready(process: subprocess.Popen[bytes], code: int, timeout: float = 240) -> float:
    started = time.monotonic()

    def answered() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"the monitor agent exited with {process.returncode}")
        return readyz()[0] == code

    guest.wait_for(answered, timeout=timeout, interval=0.2, what=f"/readyz answering {code}")
    return round(time.monotonic() - started, 2)


def wait_state(process: subprocess.Popen[bytes], state: str, timeout: float = 240) -> None:
    def reached() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"the monitor agent exited with {process.returncode}")
        return metrics().get(f'intel_gpu_driver_state{{state="{state}"}}') == 1.0

    guest.wait_for(reached, timeout=timeout, interval=0.2, what=f"state {state}")


def wait_label(state: str, timeout: float = 60) -> None:
    """The agent patches the node label just after it sets /readyz: poll for the patch."""
    guest.wait_for(lambda: labels()[-1:] == [state], timeout=timeout, interval=0.1, what=f"node label {state}")


def stop(process: subprocess.Popen[bytes]) -> dict[str, Any]:
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    return {"rc": process.wait(timeout=120), "seconds": round(time.monotonic() - started, 2)}


def full() -> None:
    """Scenarios a-d: fresh node, KMM's load, the monitor's verdict, KMM's unload, in-tree loaded first."""
    fresh = node()
    guest.report("fresh", fresh)
    agent = start_monitor()
    wait_state(agent, "loading")
    guest.report("monitor.before_load", {"readyz": readyz(), "metrics": metrics(), "node": node()})
    guest.report("a.load", worker_load())
    guest.report("a.node", node())
    guest.report("d.ready_seconds", wait_ready(agent, 200))
    wait_label("ready")
    guest.report("d.ready", {"readyz": readyz(), "metrics": metrics(), "labels": labels()})
    guest.report("c.unload", worker_unload())
    guest.report("c.node", node())
    guest.report("d.not_ready_seconds", wait_ready(agent, 503))
    wait_label("loading")
    guest.report("d.not_ready", {"readyz": readyz(), "metrics": metrics(), "labels": labels()})
    # b: Debian's in-tree module the Module replaces is loaded first (the node booted with it).
    in_tree = SPEC["in_tree_modules_to_remove"][0]
    guest.report("b.in_tree_load", guest.run(["modprobe", in_tree]))
    guest.report("b.before", node())
    guest.report("b.load", worker_load())
    guest.report("b.node", node())
    wait_ready(agent, 200)
    guest.report("b.unload", worker_unload())
    guest.report("b.after", node())
    wait_ready(agent, 503)
    before_stop = node()
    guest.report("d.stop", stop(agent))
    guest.report("d.after_stop", {"before": before_stop, "after": node(), "labels": labels()})


def refused() -> None:
    """An image whose modprobe the kernel refuses on a fresh node: the monitor says why."""
    guest.report("fresh", node())
    agent = start_monitor()
    wait_state(agent, "loading")
    guest.report("load", worker_load())
    wait_state(agent, "failed")
    wait_label("failed")
    guest.report("monitor", {"readyz": readyz(), "metrics": metrics(), "labels": labels(), "node": node()})
    guest.report("stop", stop(agent))


def report_logs_at_exit() -> None:
    import atexit

    def send() -> None:
        for path in sorted(LOGS.glob("*.log")):
            guest.report(f"log:{path.name}", path.read_text()[-8000:])

    atexit.register(send)


if __name__ == "__main__":
    report_logs_at_exit()
    subprocess.run(["ip", "link", "set", "lo", "up"], check=False)
    fake_gpu()
    api = fake_api_server()
    try:
        {"full": full, "refused": refused}[PLAN]()
    finally:
        api.terminate()
    guest.report("done", True)
