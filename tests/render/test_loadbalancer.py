"""haproxy.cfg and keepalived.conf from every example stack, checked by haproxy and keepalived."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from k8s_ha.model.spec import HaproxyCheck, Role, StackSpec
from k8s_ha.placement.place import Placement
from k8s_ha.render.loadbalancer import (
    CHECK_SCRIPT,
    haproxy_cfg,
    keepalived_conf,
    loadbalancer_config,
    loadbalancer_step,
)
from k8s_ha.render.templating import read
from tests.render.conftest import assert_ok, run, write
from tests.support.material import generate
from tests.tools import require_root, require_tool

pytestmark = pytest.mark.render


def _files(example: tuple[StackSpec, Placement], tmp_path: Path) -> list[tuple[str, Path, Path]]:
    spec, placement = example
    material = generate(spec, placement)
    out = []
    for node in placement.by_role(Role.LOAD_BALANCER):
        base = tmp_path / node.name
        ca = write(base / "kubernetes-ca.crt", material["kubernetes/ca.crt"])
        config = loadbalancer_config(spec, placement)
        cfg = haproxy_cfg(config, node, material).replace("/etc/haproxy/kubernetes-ca.crt", str(ca))
        out.append((node.name, write(base / "haproxy.cfg", cfg),
                    write(base / "keepalived.conf", keepalived_conf(config, node, material))))
    return out


def test_haproxy_accepts_every_generated_config(example: tuple[StackSpec, Placement], tmp_path: Path) -> None:
    haproxy = require_tool("haproxy")
    for name, cfg, _ in _files(example, tmp_path):
        # chroot and the user are checked at start, not by -c; the stats socket dir may not exist here.
        text = cfg.read_text().replace("stats socket /run/haproxy/admin.sock", f"stats socket {cfg.parent}/admin.sock")
        cfg.write_text(text)
        assert_ok(run([haproxy, "-c", "-f", str(cfg)]), f"haproxy -c for {name}")


def test_keepalived_accepts_every_generated_config(example: tuple[StackSpec, Placement], tmp_path: Path) -> None:
    keepalived = require_tool("keepalived")
    require_root("keepalived -t needs the named interface, created inside `unshare -n`")
    spec, _ = example
    iface = spec.network.interface
    check = write(tmp_path / "check-haproxy", read("loadbalancer/check-haproxy.sh"))
    for name, _, conf in _files(example, tmp_path):
        # Private network and mount namespaces: the interface exists and the track script sits at
        # its real path (keepalived disables a script it cannot find, and -t then exits 5).
        script = (
            f"ip link add {iface} type veth peer name {iface}-peer && ip link set {iface} up && "
            f"mount -t tmpfs k8s-ha-test /usr/local && mkdir -p {Path(CHECK_SCRIPT).parent} && "
            f"install -m 0755 {check} {CHECK_SCRIPT} && exec {keepalived} -t -f {conf}"
        )
        assert_ok(run(["unshare", "-n", "-m", "sh", "-c", script]), f"keepalived -t for {name}")


def test_keepalived_rejects_a_config_without_the_interface(example: tuple[StackSpec, Placement],
                                                           tmp_path: Path) -> None:
    """The validator can fail: the same config in a namespace without the interface is refused."""
    keepalived = require_tool("keepalived")
    require_root("keepalived -t runs inside `unshare -n`")
    _, _, conf = _files(example, tmp_path)[0]
    result = run(["unshare", "-n", keepalived, "-t", "-f", str(conf)])
    assert result.returncode != 0


def test_haproxy_rejects_a_broken_config(tmp_path: Path) -> None:
    haproxy = require_tool("haproxy")
    cfg = write(tmp_path / "bad.cfg", "backend x\n    server a 10.0.0.1:6443 check inter nonsense\n")
    assert run([haproxy, "-c", "-f", str(cfg)]).returncode != 0


def test_vrrp_v2_adds_authentication_and_v3_checks_the_source(example: tuple[StackSpec, Placement]) -> None:
    spec, placement = example
    material = generate(spec, placement)
    lb = placement.by_role(Role.LOAD_BALANCER)[0]
    v3 = keepalived_conf(loadbalancer_config(spec, placement), lb, material)
    assert "check_unicast_src" in v3 and "auth_pass" not in v3
    v2_spec = spec.model_copy(update={"load_balancer": spec.load_balancer.model_copy(
        update={"vrrp_version": 2, "advert_interval_ms": 1000})})
    v2 = keepalived_conf(loadbalancer_config(v2_spec, placement), lb, material)
    assert f"auth_pass {material['loadbalancer/vrrp-password'][:8]}" in v2 and "advert_int 1\n" in v2


def test_pair_roles_and_peers(example: tuple[StackSpec, Placement]) -> None:
    spec, placement = example
    material = generate(spec, placement)
    first, second = placement.by_role(Role.LOAD_BALANCER)
    a, b = (keepalived_conf(loadbalancer_config(spec, placement), n, material) for n in (first, second))
    assert "priority 150" in a and "priority 100" in b
    assert f"unicast_src_ip {first.ip}" in a and f"        {second.ip}\n" in a
    assert f"virtual_router_id {spec.virtual_router_id}\n" in a and f"{spec.network.vip}/" in a


def test_backends_are_the_control_plane_and_stats_are_private(example: tuple[StackSpec, Placement]) -> None:
    spec, placement = example
    material = generate(spec, placement)
    lb = placement.by_role(Role.LOAD_BALANCER)[0]
    cfg = haproxy_cfg(loadbalancer_config(spec, placement), lb, material)
    for cp in placement.by_role(Role.CONTROL_PLANE):
        assert f"server {cp.name} {cp.ip}:6443" in cfg
    assert f"bind {spec.network.vip}:6443" in cfg and f"bind {lb.ip}:{spec.load_balancer.haproxy.stats_port}" in cfg
    assert "admin:admin" not in cfg and material["loadbalancer/stats-password"] in cfg
    step = loadbalancer_step(loadbalancer_config(spec, placement), lb, material)
    assert {f.path: f.secret for f in step.files}["/etc/haproxy/haproxy.cfg"] is True


def test_track_script_timings_follow_the_stack(example: tuple[StackSpec, Placement]) -> None:
    spec, placement = example
    material = generate(spec, placement)
    lb = placement.by_role(Role.LOAD_BALANCER)[0]
    slow = spec.model_copy(update={"load_balancer": spec.load_balancer.model_copy(
        update={"haproxy_check": HaproxyCheck(interval_s=3, timeout_s=2, fall=2, rise=3)})})
    conf = keepalived_conf(loadbalancer_config(slow, placement), lb, material)
    script = conf.split("vrrp_script chk_haproxy {", 1)[1].split("}", 1)[0].split()
    assert script[-8:] == ["interval", "3", "timeout", "2", "fall", "2", "rise", "3"]


def test_the_check_script_asks_haproxy_for_a_connection(tmp_path: Path) -> None:
    script = write(tmp_path / "check-haproxy", read("loadbalancer/check-haproxy.sh"))
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert subprocess.run(["bash", str(script), "127.0.0.1", str(port)]).returncode == 0
    assert subprocess.run(["bash", str(script), "127.0.0.1", str(port)], capture_output=True).returncode != 0
