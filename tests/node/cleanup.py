"""Teardown of a test node from its state file alone, so it also runs after the test was killed.

Every node (``tests/node/cluster.py``) writes ``/run/incident-commander-e2e/NAME.json`` before it
creates anything, and adds to it before each step that leaves a trace on the machine: its network
namespace, its cgroups, the sysctls kubelet changes (their values before), the host paths that
kubelet, containerd and buildah create outside the work directory. ``teardown(state)`` undoes all
of it and is idempotent; it runs

- when the test session ends (the fixture's finalizer, and an ``atexit`` hook),
- from a reaper process that outlives a test killed with SIGKILL (``python -m tests.node.cleanup
  --reap STATE_FILE``, started by the node; it waits for the owner to die),
- at the next start, for state files whose owner is gone (``cleanup_leftovers``),
- by hand: ``python -m tests.node.cleanup`` (``make e2e-clean``).

Processes are found through the node's own cgroup (every process it starts, and every container,
lives under it), never by name.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

STATE_ROOT = Path(os.environ.get("IC_E2E_STATE_DIR", "/run/incident-commander-e2e"))
CGROUP_ROOT = Path("/sys/fs/cgroup")
"""cgroup v1 hierarchies are mounted below it (this project's machines run cgroup v1)."""
PROCESS_HIERARCHY = "pids"
"""The hierarchy whose tree under the node's cgroup holds every process of the node."""


def process_start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat: with the PID, it tells a process from a later one reusing the PID.
    None when there is no such process, or only its zombie (killed, not yet reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else fields[19]


def owner_alive(state: dict[str, Any]) -> bool:
    return bool(process_start_time(int(state["owner_pid"])) == state["owner_start"])


def state_files() -> list[Path]:
    return sorted(STATE_ROOT.glob("*.json")) if STATE_ROOT.is_dir() else []


def read_state(path: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


def write_state(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
    tmp.replace(path)


def hierarchies() -> list[Path]:
    """The mounted cgroup v1 hierarchies (cpu, memory, pids, ...; not the unified v2 one)."""
    if not CGROUP_ROOT.is_dir():
        return []
    found = []
    for entry in sorted(CGROUP_ROOT.iterdir()):
        if entry.name != "unified" and (entry / "cgroup.procs").exists() and not entry.is_symlink():
            found.append(entry)
    return found


def _cgroup_dirs(top: Path) -> Iterator[Path]:
    """``top`` and every cgroup below it, deepest first."""
    if not top.is_dir():
        return
    for root, dirs, _files in os.walk(top, topdown=False):
        del dirs
        yield Path(root)


def cgroup_pids(cgroup: str) -> list[int]:
    pids: list[int] = []
    for directory in _cgroup_dirs(CGROUP_ROOT / PROCESS_HIERARCHY / cgroup):
        with contextlib.suppress(OSError):
            pids.extend(int(line) for line in (directory / "cgroup.procs").read_text().split())
    return pids


def kill_cgroup(cgroup: str, *, grace: float = 5.0) -> None:
    """SIGTERM every process of the node's cgroup tree, then SIGKILL what is left, until it is empty."""
    for pid in cgroup_pids(cgroup):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while cgroup_pids(cgroup) and time.monotonic() < deadline:
        time.sleep(0.1)
    for _ in range(100):
        pids = cgroup_pids(cgroup)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def remove_cgroups(cgroup: str) -> None:
    for hierarchy in hierarchies():
        for directory in _cgroup_dirs(hierarchy / cgroup):
            for _ in range(50):
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)  # a killed process may take a moment to leave the cgroup


def mounts_under(prefixes: list[str]) -> list[str]:
    """Mount points at or below any of ``prefixes``, deepest first."""
    found = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        mount_point = line.split()[4].replace("\\040", " ")
        if any(mount_point == p or mount_point.startswith(p.rstrip("/") + "/") for p in prefixes):
            found.append(mount_point)
    return sorted(set(found), key=lambda m: m.count("/"), reverse=True)


def unmount_all(prefixes: list[str]) -> None:
    for _ in range(5):  # mounts stacked on the same point need one umount each
        points = mounts_under(prefixes)
        if not points:
            return
        for point in points:
            subprocess.run(["umount", "--lazy", point], capture_output=True, check=False)


def restore_sysctls(saved: dict[str, str]) -> None:
    for name, value in saved.items():
        path = Path("/proc/sys") / name.replace(".", "/")
        with contextlib.suppress(OSError):
            if path.read_text().strip() != value:
                path.write_text(value)


def teardown(state_path: Path, state: dict[str, Any]) -> None:
    """Undo everything ``state`` records; safe to call again, and on a half-made node."""
    cgroup = state.get("cgroup")
    if cgroup:
        kill_cgroup(cgroup)
    workdir = state.get("workdir")
    netns_path = state.get("netns_path")
    unmount_all([p for p in (workdir, netns_path) if p])
    if state.get("netns") and netns_path and Path(netns_path).exists():
        subprocess.run(["ip", "netns", "delete", state["netns"]], capture_output=True, check=False)
    if cgroup:
        remove_cgroups(cgroup)
    restore_sysctls(state.get("sysctls") or {})
    if workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    others_alive = any(
        other != state_path and (s := read_state(other)) is not None and owner_alive(s)
        for other in state_files()
    )
    if not others_alive:
        # Paths kubelet, containerd and buildah create outside the work directory whatever their
        # configuration says; removed only when this node created them and no other node runs.
        for created in state.get("created_paths") or []:
            unmount_all([created])
            with contextlib.suppress(OSError):
                if Path(created).is_dir() and not Path(created).is_symlink():
                    shutil.rmtree(created)
                else:
                    Path(created).unlink()
        if state.get("netns_dir_mounted_by_us") and not any(Path("/run/netns").iterdir()):
            subprocess.run(["umount", "/run/netns"], capture_output=True, check=False)
    with contextlib.suppress(FileNotFoundError):
        state_path.unlink()


def cleanup_leftovers() -> list[str]:
    """Tear down the nodes whose test process is gone; return their names."""
    cleaned = []
    for path in state_files():
        state = read_state(path)
        if state is None:
            path.unlink(missing_ok=True)
            continue
        if not owner_alive(state):
            teardown(path, state)
            cleaned.append(str(state.get("name", path.stem)))
    return cleaned


def reap(state_path: Path) -> None:
    """Wait for the node's owner to exit; if it left its node behind, tear the node down."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C to the test must not kill the reaper
    while True:
        state = read_state(state_path)
        if state is None:
            return  # torn down by its owner
        if not owner_alive(state):
            teardown(state_path, state)
            return
        time.sleep(1)


def main() -> int:
    parser = argparse.ArgumentParser(description="Tear down e2e test nodes left behind.")
    parser.add_argument("--reap", type=Path, help="wait for this state file's owner, then tear down")
    args = parser.parse_args()
    if args.reap:
        reap(args.reap)
        return 0
    for name in cleanup_leftovers():
        print(f"removed leftover node {name}")
    for path in state_files():
        print(f"still running (owner alive): {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
