"""The lab itself: isolation, pinned SSH, the systemctl shim, host loss, clean teardown.

These prove the fixture the bootstrap tests stand on; they use only
throwaway units written here, plus the Debian units of the real daemons.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.lab.conftest import KeyStore, MakeLab
from tests.lab.labhosts import HostSpec, Lab, LabError, LabHost, SshKey, cleanup_stale

pytestmark = pytest.mark.lab

WEB_UNIT = """\
[Unit]
Description=lab test web server

[Service]
Environment=PORT=8000
EnvironmentFile=-/etc/default/labweb
EnvironmentFile=-/etc/default/missing-is-fine
ExecStartPre=+/bin/sh -c 'echo "$BIND" > /run/labweb.pre'
ExecStart=/usr/bin/python3 -m http.server --bind ${BIND} $PORT
ExecReload=+/bin/sh -c 'echo reloaded $MAINPID >> /run/labweb.reloads'
User=nobody
WorkingDirectory=/srv/www
Restart=always
RestartSec=0.2
"""

JOB_UNIT = """\
[Service]
Type=oneshot
ExecStart=/bin/sh -c 'echo one >> /var/lib/labjob.out'
ExecStart=-/bin/false
ExecStart=/bin/sh -c 'echo two >> /var/lib/labjob.out'
"""


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Poll a condition (bounded); the lab never asserts on durations."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def main_pid(host: LabHost, unit: str) -> int:
    return int(host.run(f"systemctl show -p MainPID --value {unit}").stdout)


def reachable(lab: Lab, host: LabHost, timeout: float = 2.0) -> bool:
    probe = lab.client_run(["timeout", str(timeout), "bash", "-c", f"</dev/tcp/{host.ip}/22"], check=False)
    return probe.returncode == 0


@pytest.fixture(scope="module")
def lab3(lab_available: None, lab_keys: KeyStore) -> Iterator[Lab]:
    """One lab shared by the read-mostly isolation tests (each writes names of its own)."""
    specs = [HostSpec(name, lab_keys(f"host-{name}")) for name in ("alpha", "bravo", "charlie")]
    with Lab(specs, lab_keys("client")) as lab:
        yield lab
    assert lab.leftovers() == []


@pytest.fixture
def fresh3(make_lab: MakeLab) -> Lab:
    """A lab of its own, for tests that start services or cut links."""
    return make_lab(["alpha", "bravo", "charlie"])


def test_ssh_with_pinned_key_and_private_hostnames(lab3: Lab) -> None:
    machine_hostname = socket.gethostname()
    for host in lab3.hosts.values():
        out = host.run("hostname; id -un; cat /etc/hostname; command -v systemctl").stdout.split()
        assert out == [host.name, "root", host.name, "/usr/local/sbin/systemctl"]
    assert lab3["alpha"].exec_local(["hostname"]).stdout.strip() == "alpha"
    assert socket.gethostname() == machine_hostname
    assert lab3["bravo"].run("cat", stdin="fed on stdin").stdout == "fed on stdin"
    big = "x=1\n" * 50_000 + "echo big script ran; cat </dev/null\n"  # > one argv string's 128 KiB cap
    assert lab3["charlie"].run(big).stdout == "big script ran\n"


def test_ssh_refuses_a_wrong_or_unknown_host_key(lab3: Lab, lab_keys: KeyStore, tmp_path: Path) -> None:
    host = lab3["alpha"]
    wrong = tmp_path / "wrong_known_hosts"
    wrong.write_text(f"{host.ip} {lab_keys('host-bravo').public_key}\n")
    result = host.run("true", known_hosts=wrong, check=False)
    assert result.returncode == 255
    assert "Host key verification failed" in result.stderr
    unknown = tmp_path / "empty_known_hosts"
    unknown.write_text("")
    result = host.run("true", known_hosts=unknown, check=False)  # no trust-on-first-use
    assert result.returncode == 255
    assert unknown.read_text() == ""


@pytest.mark.parametrize("directory", ["/etc", "/var/lib", "/root", "/opt", "/run", "/usr/local/bin",
                                       "/srv", "/tmp"])
def test_files_written_on_one_host_stay_there(lab3: Lab, directory: str) -> None:
    marker = f"{directory}/lab-marker-{os.getpid()}"
    lab3["alpha"].run(f"echo alpha > {marker}")
    assert lab3["alpha"].run(f"cat {marker}").stdout == "alpha\n"
    assert lab3["bravo"].run(f"test -e {marker}", check=False).returncode == 1
    assert not Path(marker).exists()


def test_machine_global_sysctls_are_read_only_but_net_is_per_host(lab3: Lab) -> None:
    alpha, bravo = lab3["alpha"], lab3["bravo"]
    assert alpha.run("echo 1 > /proc/sys/kernel/pid_max", check=False).returncode != 0
    alpha.run("sysctl -qw net.ipv4.ip_nonlocal_bind=1")
    assert alpha.run("sysctl -n net.ipv4.ip_nonlocal_bind").stdout == "1\n"
    assert bravo.run("sysctl -n net.ipv4.ip_nonlocal_bind").stdout == "0\n"
    assert Path("/proc/sys/net/ipv4/ip_nonlocal_bind").read_text() == "0\n"


def test_processes_of_one_host_are_invisible_to_another(lab3: Lab) -> None:
    alpha, bravo = lab3["alpha"], lab3["bravo"]
    alpha.run("setsid sleep 4242 </dev/null >/dev/null 2>&1 &")
    wait_for(lambda: bool(alpha.pids("sleep")), "sleep on alpha")
    assert bravo.pids("sleep") == []
    assert bravo.run("pgrep -f 'sleep 4242'", check=False).returncode == 1
    assert alpha.run("cat /proc/1/comm").stdout == "lab-init\n"


def test_shim_runs_a_unit_the_client_can_reach(fresh3: Lab) -> None:
    host = fresh3["alpha"]
    host.run(f"""
        set -e
        mkdir -p /srv/www /etc/systemd/system/labweb.service.d
        echo hello-from-alpha > /srv/www/index.html
        cat > /etc/systemd/system/labweb.service <<'EOF'
{WEB_UNIT}EOF
        printf '[Service]\\nEnvironment=PORT=8080\\n' > /etc/systemd/system/labweb.service.d/port.conf
        echo 'BIND={host.ip}' > /etc/default/labweb
        systemctl daemon-reload
        systemctl enable --now labweb
        systemctl is-active --quiet labweb
        test "$(systemctl is-enabled labweb)" = enabled
        test "$(cat /run/labweb.pre)" = {host.ip}
    """)
    page = fresh3.client_run(["curl", "-sf", "--max-time", "5", f"http://{host.ip}:8080/"]).stdout
    assert page == "hello-from-alpha\n"
    pid = main_pid(host, "labweb")
    assert host.run(f"ps -o user= -p {pid}").stdout.strip() == "nobody"
    host.run("systemctl reload labweb")
    assert host.run("cat /run/labweb.reloads").stdout == f"reloaded {pid}\n"


def test_shim_restart_stop_and_restart_policy(fresh3: Lab) -> None:
    host = fresh3["bravo"]
    host.run(f"""
        mkdir -p /srv/www
        cat > /etc/systemd/system/labweb.service <<'EOF'
{WEB_UNIT}EOF
        echo 'BIND={host.ip}' > /etc/default/labweb
        systemctl start labweb.service
    """)
    first = main_pid(host, "labweb")
    host.run("systemctl restart labweb")
    second = main_pid(host, "labweb")
    assert second not in (0, first)

    host.run("systemctl kill -s SIGKILL labweb")  # Restart=always brings it back
    wait_for(lambda: main_pid(host, "labweb") not in (0, second), "labweb restarted after SIGKILL")
    assert host.run("systemctl show -p NRestarts --value labweb").stdout == "1\n"

    host.run("systemctl stop labweb")
    assert host.run("systemctl is-active labweb", check=False).stdout == "inactive\n"
    assert host.pids("python3") == []


def test_shim_oneshot_and_timer_are_recorded(fresh3: Lab) -> None:
    host = fresh3["charlie"]
    host.run(f"""
        set -e
        cat > /etc/systemd/system/labjob.service <<'EOF'
{JOB_UNIT}EOF
        printf '[Timer]\\nOnCalendar=daily\\n' > /etc/systemd/system/labjob.timer
        systemctl enable --now labjob.timer
        systemctl is-active --quiet labjob.timer
        systemctl start labjob.service
    """)
    assert host.run("cat /var/lib/labjob.out").stdout == "one\ntwo\n"
    missing = host.run("systemctl start no-such-unit", check=False)
    assert missing.returncode == 5
    assert host.run("systemctl mask labjob", check=False).returncode == 1  # unsupported: loud


def test_packaged_haproxy_and_keepalived_units_run_under_the_shim(fresh3: Lab) -> None:
    host, vip = fresh3["alpha"], fresh3.spare_ip(0)
    host.run(f"""
        set -e
        cat > /etc/keepalived/keepalived.conf <<'EOF'
global_defs {{
    vrrp_version 3
}}
vrrp_instance lab {{
    state MASTER
    interface eth0
    virtual_router_id 51
    priority 150
    advert_int 0.1
    virtual_ipaddress {{
        {vip}/{fresh3.prefixlen}
    }}
}}
EOF
        mkdir -p /etc/systemd/system/keepalived.service.d
        printf '[Service]\\nRestart=always\\nRestartSec=0.2\\n' > /etc/systemd/system/keepalived.service.d/restart.conf
        systemctl enable --now haproxy keepalived
        systemctl reload haproxy
        systemctl is-active --quiet haproxy
    """)
    wait_for(lambda: vip in host.addresses(), "keepalived to claim the VIP")
    before = main_pid(host, "keepalived")
    host.run("systemctl kill -s SIGKILL keepalived")
    wait_for(lambda: main_pid(host, "keepalived") not in (0, before), "keepalived back after SIGKILL")
    wait_for(lambda: vip in host.addresses(), "the VIP back")
    assert vip not in fresh3["bravo"].addresses()


def test_packaged_etcd_unit_runs_as_its_user_and_comes_back_after_sigkill(fresh3: Lab) -> None:
    host = fresh3["bravo"]
    url = f"http://{host.ip}:2379"
    host.run(f"""
        echo 'DAEMON_ARGS="--listen-client-urls {url} --advertise-client-urls {url}"' > /etc/default/etcd
        systemctl enable --now etcd
    """)
    health = ["etcdctl", f"--endpoints={url}", "--dial-timeout=2s", "endpoint", "health"]
    wait_for(lambda: fresh3.client_run(health, check=False).returncode == 0, "etcd healthy")
    pid = main_pid(host, "etcd")
    assert host.run(f"ps -o user= -p {pid}").stdout.strip() == "etcd"
    assert "ETCD_NAME=bravo" in host.run(f"cat /proc/{pid}/environ").stdout.split("\0")  # %H
    host.run("systemctl kill -s SIGKILL etcd")  # Restart=on-abnormal in Debian's unit
    wait_for(lambda: main_pid(host, "etcd") not in (0, pid), "etcd back after SIGKILL")
    wait_for(lambda: fresh3.client_run(health, check=False).returncode == 0, "etcd healthy again")


def test_link_down_makes_a_host_unreachable_and_link_up_restores_it(fresh3: Lab) -> None:
    bravo = fresh3["bravo"]
    assert reachable(fresh3, bravo)
    bravo.link_down()
    assert not reachable(fresh3, bravo, timeout=0.5)
    assert reachable(fresh3, fresh3["alpha"])
    bravo.link_up()
    wait_for(lambda: reachable(fresh3, bravo), "bravo back on the bridge")
    assert bravo.run("hostname").stdout == "bravo\n"


def test_after_the_lab_exits_nothing_remains(lab_available: None, lab_keys: KeyStore) -> None:
    lab = Lab([HostSpec("solo", lab_keys("host-solo"))], lab_keys("client"))
    with lab:
        host = lab["solo"]
        host.run("setsid sleep 4343 </dev/null >/dev/null 2>&1 &")
        host.run("printf '[Service]\\nExecStart=/bin/sleep 4444\\n' > /etc/systemd/system/nap.service"
                 " && systemctl start nap")
        assert lab.leftovers() != []
    assert lab.leftovers() == []
    assert not [ns for ns in _netns() if ns.startswith(lab.run_name)]
    assert str(lab.dir) not in Path("/proc/self/mountinfo").read_text()
    assert subprocess.run(["pgrep", "-f", "sleep 4[34][34]4"], capture_output=True).returncode == 1


def test_a_failed_setup_is_torn_down_completely(lab_available: None, lab_keys: KeyStore,
                                                tmp_path: Path) -> None:
    bad_key = tmp_path / "not_a_key"
    bad_key.write_text("this is not an OpenSSH private key\n")
    good = HostSpec("good", lab_keys("host-good"))
    lab = Lab([good, HostSpec("broken", SshKey(bad_key, "ssh-ed25519 AAAA"))], lab_keys("client"))
    with pytest.raises(LabError, match="broken did not come up"), lab:
        pass
    assert lab.leftovers() == []


def test_cleanup_stale_removes_only_labs_of_dead_owners(lab_available: None, tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale, live = f"labstale-{dead.pid}-aaaaaa", f"labstale-{os.getpid()}-bbbbbb"
    for run_name in (stale, live):
        subprocess.run(["ip", "netns", "add", f"{run_name}-client"], check=True)
        (tmp_path / run_name).mkdir()
    try:
        assert cleanup_stale("labstale", base_dir=tmp_path) == [stale]
        assert [ns for ns in _netns() if ns.startswith("labstale-")] == [f"{live}-client"]
        assert sorted(p.name for p in tmp_path.iterdir()) == [live]
    finally:
        subprocess.run(["ip", "netns", "del", f"{live}-client"], check=False)


def _netns() -> list[str]:
    return os.listdir("/run/netns") if os.path.isdir("/run/netns") else []
