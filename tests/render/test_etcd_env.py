"""etcd renderers without external tools: what each member's files say, and what stays secret."""

from __future__ import annotations

import re

import pytest

from k8s_ha.model import timers
from k8s_ha.model.artifacts import ArtifactSettings
from k8s_ha.model.checksums import RELEASE_SHA256
from k8s_ha.model.errors import SpecError
from k8s_ha.model.spec import EtcdBackup, EtcdSource, Role, StackSpec, parse_stack
from k8s_ha.model.stackfile import read_stack_file
from k8s_ha.placement.place import Placement, place
from k8s_ha.render import etcd as e
from k8s_ha.render import material as m
from k8s_ha.render.steps import bundle
from tests.conftest import ROOT, load_example

pytestmark = pytest.mark.render

SHA = "a" * 64


def parse_env(text: str) -> dict[str, str]:
    """systemd EnvironmentFile lines -> dict; a repeated key would hide a mistake, so it fails."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, eq, value = line.partition("=")
        assert eq and re.fullmatch(r"[A-Z][A-Z0-9_]*", key), f"not KEY=value: {line!r}"
        assert key not in out, f"{key} set twice"
        assert value == value.strip() and not value.startswith(("'", '"')), f"{key}: unquoted, unpadded"
        out[key] = value
    return out


def with_etcd(spec: StackSpec, **update: object) -> StackSpec:
    return spec.model_copy(update={"etcd": spec.etcd.model_copy(update=update)})


def test_endpoints_and_initial_cluster_list_every_member(example: tuple[StackSpec, Placement]) -> None:
    spec, placement = example
    members = placement.by_role(Role.ETCD)
    assert e.etcd_endpoints(placement.by_role(Role.ETCD)) == [f"https://{n.ip}:2379" for n in members]
    expected = ",".join(f"{n.name}=https://{n.ip}:2380" for n in members)
    for node in members:
        env = parse_env(e.etcd_env(e.etcd_config(spec, placement), node))
        assert env["ETCD_INITIAL_CLUSTER"] == expected
        assert env["ETCD_NAME"] == node.name
        assert env["ETCD_DATA_DIR"] == "/var/lib/etcd"
        assert env["ETCD_LISTEN_CLIENT_URLS"].split(",") == [f"https://{node.ip}:2379", "https://127.0.0.1:2379"]
        assert env["ETCD_ADVERTISE_CLIENT_URLS"] == f"https://{node.ip}:2379"
        assert env["ETCD_LISTEN_PEER_URLS"] == env["ETCD_INITIAL_ADVERTISE_PEER_URLS"] == f"https://{node.ip}:2380"
        assert env["ETCD_LISTEN_METRICS_URLS"] == "http://127.0.0.1:2381"
        assert env["ETCD_INITIAL_CLUSTER_TOKEN"] == f"k8s-ha-{spec.cluster.name}-etcd"


def test_state_is_decided_on_the_host_not_rendered() -> None:
    spec, placement = load_example("Pulumi.prod.yaml")
    for node in placement.by_role(Role.ETCD):
        text = e.etcd_env(e.etcd_config(spec, placement), node)
        assert "ETCD_INITIAL_CLUSTER_STATE" not in parse_env(text)
        assert "ETCD_INITIAL_CLUSTER_STATE" not in text
    unit = e.etcd_unit(e.etcd_config(spec, placement))
    assert f"EnvironmentFile={e.ENV_FILE}\nEnvironmentFile={e.STATE_FILE}\n" in unit  # state file wins
    assert f"ConditionPathExists={e.STATE_FILE}" in unit


def test_tls_on_clients_and_peers() -> None:
    spec, placement = load_example("Pulumi.dev.yaml")
    env = parse_env(e.etcd_env(e.etcd_config(spec, placement), placement.by_role(Role.ETCD)[1]))
    assert env["ETCD_CLIENT_CERT_AUTH"] == env["ETCD_PEER_CLIENT_CERT_AUTH"] == "true"
    assert env["ETCD_TRUSTED_CA_FILE"] == env["ETCD_PEER_TRUSTED_CA_FILE"] == "/etc/etcd/pki/ca.crt"
    pki = "/etc/etcd/pki"
    assert (env["ETCD_CERT_FILE"], env["ETCD_KEY_FILE"]) == (f"{pki}/server.crt", f"{pki}/server.key")
    assert (env["ETCD_PEER_CERT_FILE"], env["ETCD_PEER_KEY_FILE"]) == (f"{pki}/peer.crt", f"{pki}/peer.key")
    urls = [u for k, v in env.items() if k.endswith("_URLS") and k != "ETCD_LISTEN_METRICS_URLS" for u in v.split(",")]
    assert urls and all(u.startswith("https://") for u in urls)


def test_timing_quota_and_compaction_follow_the_spec() -> None:
    spec, placement = load_example("Pulumi.dev.yaml")
    tuned = with_etcd(spec, heartbeat_interval_ms=50, election_timeout_ms=750)
    node = placement.by_role(Role.ETCD)[0]
    env = parse_env(e.etcd_env(e.etcd_config(tuned, placement), node))
    assert (env["ETCD_HEARTBEAT_INTERVAL"], env["ETCD_ELECTION_TIMEOUT"]) == ("50", "750")
    default_env = parse_env(e.etcd_env(e.etcd_config(spec, placement), node))
    assert (default_env["ETCD_HEARTBEAT_INTERVAL"], default_env["ETCD_ELECTION_TIMEOUT"]) == (
        str(timers.HEARTBEAT_INTERVAL_MS), str(timers.ELECTION_TIMEOUT_MS))
    # dev members have 10 GiB disks: a quarter of it; prod's 40 GiB default is capped at 8 GiB.
    assert env["ETCD_QUOTA_BACKEND_BYTES"] == str(10 * 1024**3 // 4)
    prod, prod_placement = load_example("Pulumi.prod.yaml")
    prod_env = parse_env(e.etcd_env(e.etcd_config(prod, prod_placement), prod_placement.by_role(Role.ETCD)[0]))
    assert prod_env["ETCD_QUOTA_BACKEND_BYTES"] == str(8 * 1024**3)
    assert (env["ETCD_AUTO_COMPACTION_MODE"], env["ETCD_AUTO_COMPACTION_RETENTION"]) == ("periodic", "1h")


def test_keys_are_secret_and_private(prod_material: dict[str, str]) -> None:
    spec, placement = load_example("Pulumi.prod.yaml")
    node = placement.by_role(Role.ETCD)[2]
    step = e.etcd_member_step(e.etcd_config(spec, placement), node, prod_material)
    by_path = {f.path: f for f in step.files}
    keys = {p for p in by_path if p.endswith(".key")}
    assert keys == {e.SERVER_KEY, e.PEER_KEY, e.HEALTHCHECK_KEY}
    for path, f in by_path.items():
        if path in keys:
            assert (f.secret, f.mode, f.owner) == (True, "0600", "etcd:etcd"), path
        else:
            assert not f.secret, path
            assert not any(prod_material[k] in f.content for k in prod_material if m.is_secret(k)), path
    assert by_path[e.SERVER_KEY].content == prod_material[m.etcd_server_key(node.name)]
    assert by_path[e.PEER_CERT].content == prod_material[m.etcd_peer_cert(node.name)]
    assert step.secret and step.delete_script == "etcd-remove.sh" and step.host == node.name
    health = e.etcd_health_step(e.etcd_config(spec, placement), prod_material)
    assert health.host == placement.by_role(Role.ETCD)[0].name and health.secret
    assert [f.path for f in health.files if f.secret] == [e.HEALTHCHECK_KEY]


def test_release_source_is_the_pinned_upstream_tarball() -> None:
    """The default: the upstream release of versions.etcd, pinned by the checksum table."""
    spec, placement = load_example("Pulumi.dev.yaml")
    env = dict(e.etcd_member_step(e.etcd_config(spec, placement), placement.by_role(Role.ETCD)[0],
                                  m.Placeholders()).env)
    assert env["K8SHA_ETCD_VERSION"] == "3.6.14"
    assert (env["K8SHA_ETCD_SOURCE"], env["K8SHA_ETCD_BIN_DIR"]) == ("tarball", "/usr/local/bin")
    assert env["K8SHA_ETCD_URL"] == (
        "https://github.com/etcd-io/etcd/releases/download/v3.6.14/etcd-v3.6.14-linux-amd64.tar.gz")
    assert env["K8SHA_ETCD_SHA256"] == RELEASE_SHA256["etcd"]["3.6.14"]
    # Through a files mirror: <mirror>/<upstream host>/<path>, the same checksum.
    mirrored = spec.model_copy(update={"artifacts": ArtifactSettings(files_repo="http://10.0.0.5:8080/files")})
    env = dict(e.etcd_member_step(e.etcd_config(mirrored, placement), placement.by_role(Role.ETCD)[0],
                                  m.Placeholders()).env)
    assert env["K8SHA_ETCD_URL"] == ("http://10.0.0.5:8080/files/github.com/etcd-io/etcd/releases/download/"
                                     "v3.6.14/etcd-v3.6.14-linux-amd64.tar.gz")
    # A version the table does not know is refused with what to do.
    with pytest.raises(SpecError, match=r"versions\.etcd: no pinned sha256 for etcd 3\.6\.99"):
        raw = read_stack_file(ROOT / "Pulumi.dev.yaml")
        parse_stack({**raw.config, "versions": {"etcd": "3.6.99"}}, raw.secret_keys)


def test_package_source_uses_debian_binaries() -> None:
    spec, placement = load_example("Pulumi.dev.yaml")
    spec = with_etcd(spec, source=EtcdSource(kind="package"))
    step = e.etcd_member_step(e.etcd_config(spec, placement), placement.by_role(Role.ETCD)[0], m.Placeholders())
    env = dict(step.env)
    assert (env["K8SHA_ETCD_SOURCE"], env["K8SHA_ETCD_BIN_DIR"]) == ("package", "/usr/bin")
    assert "ExecStart=/usr/bin/etcd\n" in e.etcd_unit(e.etcd_config(spec, placement))


def test_tarball_source_needs_and_uses_the_checksum() -> None:
    raw = read_stack_file(ROOT / "Pulumi.dev.yaml")
    mirror = "https://mirror.example/etcd/v{version}/etcd-v{version}-linux-amd64.tar.gz"
    config = {**raw.config, "versions": {"etcd": "3.6.16"}}
    config["etcd"] = {**config["etcd"], "source": {"kind": "tarball", "url": mirror, "sha256": SHA}}
    spec = parse_stack(config, raw.secret_keys)
    placement = place(spec)
    step = e.etcd_member_step(e.etcd_config(spec, placement), placement.by_role(Role.ETCD)[0], m.Placeholders())
    env = dict(step.env)
    assert env["K8SHA_ETCD_SOURCE"] == "tarball"
    assert env["K8SHA_ETCD_SHA256"] == SHA
    assert env["K8SHA_ETCD_URL"] == "https://mirror.example/etcd/v3.6.16/etcd-v3.6.16-linux-amd64.tar.gz"
    assert env["K8SHA_ETCD_VERSION"] == "3.6.16"
    assert env["K8SHA_ETCD_BIN_DIR"] == "/usr/local/bin"
    assert "ExecStart=/usr/local/bin/etcd\n" in e.etcd_unit(e.etcd_config(spec, placement))
    backup = e.etcd_backup_service(e.etcd_config(spec, placement), placement.by_role(Role.ETCD)[0])
    assert "Environment=K8SHA_ETCD_BIN_DIR=/usr/local/bin\n" in backup
    assert f"export K8SHA_ETCD_SHA256={SHA}\n" in bundle(step)
    # The spec refuses a tarball without its checksum, and so does the renderer if handed one.
    del config["etcd"]["source"]["sha256"]
    with pytest.raises(Exception, match=r"etcd\.source\.sha256"):
        parse_stack(config, raw.secret_keys)
    with pytest.raises(ValueError, match="sha256: a tarball source needs a url and its sha256"):
        EtcdSource(kind="tarball", url=mirror)  # refused when built, as in the stack file
    unchecked = with_etcd(spec, source=EtcdSource.model_construct(kind="tarball", url=mirror))  # bypassed
    with pytest.raises(ValueError, match="sha256"):
        e.etcd_member_step(e.etcd_config(unchecked, placement), placement.by_role(Role.ETCD)[0], m.Placeholders())


def test_backup_units_follow_the_spec() -> None:
    spec, placement = load_example("Pulumi.prod.yaml")
    node = placement.by_role(Role.ETCD)[0]
    config = e.etcd_config(spec, placement)
    service, timer = e.etcd_backup_service(config, node), e.etcd_backup_timer(config)
    assert "OnCalendar=*:0/30\n" in timer and "Persistent=true\n" in timer
    assert "Environment=K8SHA_BACKUP_RETAIN=96\n" in service
    assert "Environment=K8SHA_BACKUP_DIR=/var/backups/etcd\n" in service
    assert "ReadWritePaths=/var/backups/etcd\n" in service
    assert f"Environment=K8SHA_ETCD_ENDPOINT=https://{node.ip}:2379\n" in service
    assert "User=etcd\n" in service and "Type=oneshot\n" in service
    # Values that would break out of a unit file are refused, not rendered.
    for bad in ({"on_calendar": "hourly\nExecStartPre=/bin/sh"}, {"directory": "/var/backups/my etcd"},
                {"directory": "relative/dir"}, {"directory": "/var/../etc"}):
        with pytest.raises(ValueError, match=r"must be an absolute path|systemd calendar"):
            EtcdBackup(**bad)  # refused when built; the renderer's own check is for a model built around it
        broken = with_etcd(spec, backup=EtcdBackup.model_construct(**bad))
        config = e.etcd_config(broken, placement)
        with pytest.raises(ValueError, match=r"etcd\.backup\."):
            e.etcd_backup_timer(config) if "on_calendar" in bad else e.etcd_backup_service(config, node)


def test_unit_restarts_and_replaces_the_packaged_one() -> None:
    spec, placement = load_example("Pulumi.dev.yaml")
    unit = e.etcd_unit(e.etcd_config(spec, placement))
    for line in ("Type=notify", "User=etcd", "Restart=always", "RestartSec=1s", "LimitNOFILE=65536",
                 "StartLimitIntervalSec=0", "TimeoutStartSec=0", "WantedBy=multi-user.target"):
        assert f"\n{line}\n" in unit, line
    assert "/etc/default/etcd" not in unit.replace("# It reads neither /etc/default/etcd", "")
    assert "Alias=" not in unit  # Debian's unit aliases etcd2.service; ours must not add names


def test_renderers_refuse_a_node_that_is_not_a_member() -> None:
    spec, placement = load_example("Pulumi.dev.yaml")
    worker = placement.by_role(Role.CONTROL_PLANE)[0]
    with pytest.raises(ValueError, match="not an etcd member"):
        e.etcd_env(e.etcd_config(spec, placement), worker)


def test_cluster_tokens_differ_between_stacks() -> None:
    tokens = {e.cluster_token(e.etcd_config(*load_example(name))) for name in ("Pulumi.dev.yaml", "Pulumi.prod.yaml",
                                                                  "Pulumi.staging.yaml")}
    assert len(tokens) == 3
