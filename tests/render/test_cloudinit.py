"""cloud-init user-data and network-config of every VM, through cloud-init schema and netplan."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from k8s_ha.model.spec import StackSpec
from k8s_ha.placement.place import Placement
from k8s_ha.render.cloudinit import network_config, user_data
from tests.render.conftest import assert_ok, run, write
from tests.support.material import generate
from tests.tools import require_tool

pytestmark = pytest.mark.render


def test_user_data_passes_cloud_init_schema(example: tuple[StackSpec, Placement], tmp_path: Path) -> None:
    cloud_init = require_tool("cloud-init")
    spec, placement = example
    material = generate(spec, placement)
    for node in (n for n in placement.nodes if n.is_vm):
        path = write(tmp_path / f"{node.name}.yaml", user_data(spec, node, material, ("ssh-ed25519 AAAAC3Nz prog",)))
        result = run([cloud_init, "schema", "--config-file", str(path)])
        assert_ok(result, f"cloud-init schema for {node.name}")
        assert "Valid cloud-config" in result.stdout


def test_cloud_init_schema_rejects_a_bad_document(tmp_path: Path) -> None:
    cloud_init = require_tool("cloud-init")
    path = write(tmp_path / "bad.yaml", "#cloud-config\nusers: 7\nssh_pwauth: maybe-later\n")
    assert run([cloud_init, "schema", "--config-file", str(path)]).returncode != 0


def test_network_config_passes_netplan(example: tuple[StackSpec, Placement], tmp_path: Path) -> None:
    netplan = require_tool("netplan")
    spec, placement = example
    for node in (n for n in placement.nodes if n.is_vm):
        root = tmp_path / node.name
        doc = {"network": yaml.safe_load(network_config(spec, node))}
        path = write(root / "etc/netplan/50-cloud-init.yaml", yaml.safe_dump(doc))
        path.chmod(0o600)
        assert_ok(run([netplan, "generate", "--root-dir", str(root)]), f"netplan generate for {node.name}")
        link = (root / "run/systemd/network/10-netplan-eth0.link").read_text()
        assert node.mac in link and f"Name={spec.network.interface}" in link
        network = (root / "run/systemd/network/10-netplan-eth0.network").read_text()
        assert f"Address={node.ip}/{spec.network.cidr.prefixlen}" in network
        assert f"Gateway={spec.network.gateway}" in network


def test_user_data_pins_the_generated_host_key(example: tuple[StackSpec, Placement]) -> None:
    spec, placement = example
    material = generate(spec, placement)
    node = next(n for n in placement.nodes if n.is_vm)
    doc = yaml.safe_load(user_data(spec, node, material))
    assert doc["ssh_keys"]["ed25519_public"] == material[f"ssh/{node.name}/host-ed25519.pub"]
    assert doc["ssh_keys"]["ed25519_private"].strip() == material[f"ssh/{node.name}/host-ed25519.key"].strip()
    assert doc["hostname"] == node.name and doc["ssh_pwauth"] is False
    assert doc["users"][0]["name"] == spec.ssh.user
    if spec.mirrors.os_packages is None:
        assert "apt" not in doc  # the image keeps its own sources
    else:
        assert doc["apt"]["primary"][0]["uri"] == spec.mirrors.os_packages
