"""Joining a Ray cluster for one run, and what that cluster has to offer as a `Machine`.

`--ray ADDRESS` connects to a running cluster (its head's GCS address, `host:6379`); `auto` is the cluster named
by RAY_ADDRESS; `local` starts a head on this machine for this run only, listening on loopback, and stops it
at the end. Nothing else is started: no dashboard, no usage reporting, no token written to the home folder.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import tempfile
from typing import Any

from gridwatch.run.devices import GpuInfo, Machine

LOCAL_OBJECT_STORE = 256 * 2**20  # gridwatch passes small messages only
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # + empty SETTINGS
INSTALL_HINT = "the Ray backend needs Ray: pip install 'gridwatch[ray]'"


class ClusterError(ValueError):
    """No cluster to run on: Ray missing, an address that does not answer (exit code 2)."""


def import_ray() -> Any:
    # Never let a Ray call start a cluster of its own (Ray's default after ray.shutdown()): gridwatch joins
    # one only in connect().
    os.environ.setdefault("RAY_ENABLE_AUTO_CONNECT", "0")
    try:
        import ray
    except ImportError:
        raise ClusterError(INSTALL_HINT) from None
    return ray


def quiet_local_env() -> None:
    """Before Ray is imported, for a head of our own: loopback only, no usage report, no auth token file."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def connect(address: str, num_cpus: int | None = None) -> Any:
    """ray, initialised for this process; raises ClusterError with the reason in words."""
    address = address.strip()
    if not address:
        raise ClusterError("--ray: give an address (host:port), 'auto' or 'local'")
    if address.startswith("ray://"):  # its actors cannot stream, and gridwatch's slots are streams
        raise ClusterError(f"--ray {address}: Ray Client (ray://) addresses are not supported; give the head's "
                           "GCS address instead (host:6379), from a machine that can reach the cluster's nodes")
    if address == "local":
        quiet_local_env()
    elif address == "auto" and not os.environ.get("RAY_ADDRESS"):
        raise ClusterError("--ray auto: RAY_ADDRESS is not set; give the cluster's address, or 'local'")
    ray = import_ray()
    if address != "local":
        reachable(os.environ["RAY_ADDRESS"] if address == "auto" else address)
    if ray.is_initialized():  # one Ray connection per process: the one it has, if it is the one asked for
        here = str(ray.get_runtime_context().gcs_address)
        wanted = os.environ.get("RAY_ADDRESS", "") if address == "auto" else address
        if address != "local" and wanted.split("://", 1)[-1] != here:
            raise ClusterError(f"--ray {address}: this process is connected to the Ray cluster at {here}; "
                               "one run at a time joins one cluster")
        return ray
    common: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
    try:
        if address == "local":
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
                     object_store_memory=LOCAL_OBJECT_STORE, _temp_dir=short_temp_dir(), **common)
        else:
            ray.init(address=address, **common)
    except Exception as exc:  # noqa: BLE001 - ConnectionError, RuntimeError, ValueError: all "cannot connect"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ClusterError(f"--ray {address}: cannot connect to a Ray cluster: {first[:300]}") from None
    return ray


def reachable(address: str, timeout_s: float = 5.0) -> None:
    """Refuse an address nothing answers on within seconds (Ray itself would retry for minutes), and one where
    something answers that is not Ray's GCS."""
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise ClusterError(f"--ray {address}: expected host:port (the head's GCS address), 'auto' or 'local'")
    try:
        sock = socket.create_connection((host.strip("[]"), int(port)), timeout_s)
    except OSError as exc:
        raise ClusterError(f"--ray {address}: nothing answers at {host}:{port} ({exc.strerror or exc}); is the "
                           "cluster's head running? (ray start --head on it)") from None
    # Ray's GCS and its client server speak gRPC: HTTP/2, whose server answers a client's opening with a
    # SETTINGS frame (type 4). Anything else (a web server, a database) would leave Ray retrying for minutes.
    try:
        sock.settimeout(timeout_s)
        sock.sendall(H2_PREFACE)
        reply = sock.recv(9)
    except OSError:
        reply = b""
    finally:
        sock.close()
    if len(reply) < 4 or reply[3] != 4:
        raise ClusterError(f"--ray {address}: something answers at {host}:{port}, but not a Ray cluster (no gRPC); "
                           "give the head's GCS port (6379 by default)")


def disconnect() -> None:
    """Leave the cluster (a local head of ours stops with it): every actor of this run ends."""
    try:
        import ray
    except ImportError:
        return
    if ray.is_initialized():
        ray.shutdown()


def short_temp_dir() -> str:
    """Ray's session folder holds unix sockets, whose paths may not exceed ~107 bytes: a short root."""
    root = "/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir()
    return os.path.join(root, f"gridwatch-ray-{os.getuid()}")


def cluster_machine(ray: Any) -> Machine:
    """The cluster as one machine: its CPUs and GPUs as Ray counts them (GPU names and memory are the nodes')."""
    res = ray.cluster_resources()
    cpus = max(1, int(res.get("CPU", 1)))
    gpus = tuple(GpuInfo(i, f"cluster GPU {i}", 0) for i in range(int(res.get("GPU", 0))))
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    note = "" if gpus else f"no GPU in the Ray cluster ({len(nodes)} node{'s' if len(nodes) != 1 else ''})"
    return Machine(f"Ray cluster, {len(nodes)} node{'s' if len(nodes) != 1 else ''}", cpus, cpus,
                   int(res.get("memory", 0)), gpus, note)


def driver_node_id(ray: Any) -> str:
    return str(ray.get_runtime_context().get_node_id())


class Cluster:
    """A run's link to Ray: joined before planning (its resources are the run's machine), left at the end."""

    def __init__(self, ray: Any, address: str, owned: bool = True) -> None:
        self.ray = ray
        self.address = address
        self.owned = owned  # this run connected (or started the local head), so it leaves at its end
        self.machine = cluster_machine(ray)
        try:
            self.driver_node = driver_node_id(ray)
        except Exception:  # noqa: BLE001 - a Ray client connection has no node of its own: every node copies
            self.driver_node = ""

    @classmethod
    def join(cls, address: str) -> Cluster:
        """Connect; a process already connected (a test, a notebook) keeps its connection after the run."""
        already = "ray" in sys.modules and sys.modules["ray"].is_initialized()
        return cls(connect(address), address, owned=not already)

    def shortfall(self, slots: list[Any]) -> str:
        """What the slots ask of the cluster beyond what it has, in words; "" when they fit."""
        from gridwatch.cluster.pool import slot_resources

        asks = [slot_resources(s, slots) for s in slots]
        cpus, gpus = sum(a["num_cpus"] for a in asks), sum(a["num_gpus"] for a in asks)
        res = self.ray.cluster_resources()
        if cpus > res.get("CPU", 0) + 1e-9:
            return (f"{len(slots)} slots ask the Ray cluster ({self.address}) for {cpus:g} CPUs, it has "
                    f"{res.get('CPU', 0):g}: lower cpu_slots or threads_per_cpu_slot, or use --cpu-slots")
        if gpus > res.get("GPU", 0) + 1e-9:
            return f"the slots ask the Ray cluster for {gpus:g} GPUs, it has {res.get('GPU', 0):g}"
        return ""

    def pool_factory(self) -> Any:
        from gridwatch.cluster.pool import RayWorkerPool

        def make(slots: list[Any], preload: list[tuple[str, str]], parent: Any) -> RayWorkerPool:
            return RayWorkerPool(self.ray, slots, preload, self.driver_node, parent=parent)

        return make

    def close(self) -> None:
        if self.owned:
            disconnect()
