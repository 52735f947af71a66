"""Harbor's files and scripts, checked for real: harbor.yml against the strict model, the step
bundles with bash -n and shellcheck, the unit with systemd-analyze, the nodes' hosts.toml with
tomllib, and the install/remove bundle run end to end in a sandbox.

The sandbox (root): private mount, network and PID namespaces; copy-on-write overlays over /etc,
/opt, /usr/local and /var, so nothing reaches the machine; stand-ins for `docker` and `systemctl`
only (recording every call, refusing anything unexpected); a real installer tarball served by
file:// and checked by the real sha256sum and tar; a real TLS endpoint on 127.0.0.1:443 with the
generated Harbor certificate, which the script's curl verifies with the trust file it installed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import stat
import sys
import tarfile
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from k8s_ha.model.artifacts import HARBOR_PROXY_PROJECTS
from k8s_ha.model.spec import Role, StackSpec
from k8s_ha.placement.place import Placement, place
from k8s_ha.render import material as m
from k8s_ha.render.harbor import (
    CERT_FILE,
    CONFIG_FILE,
    DOCKER_DROPIN,
    KEY_FILE,
    TRUST_FILE,
    UNIT_FILE,
    HarborConfig,
    HarborYml,
    config_version,
    harbor_config,
    harbor_step,
    harbor_unit,
    harbor_yml,
    harbor_yml_model,
    install_dir,
    proxy_cache_projects,
    served_certificate,
)
from k8s_ha.render.kubernetes import CERTS_DIR, kubernetes_config, registry_host_files
from k8s_ha.render.steps import HostFile, Step, bundle
from k8s_ha.render.templating import CONFIGS
from tests.conftest import load_example
from tests.render.conftest import assert_ok, run, write
from tests.support.material import generate
from tests.tools import require_root, require_tool

pytestmark = pytest.mark.render

HARBOR_IP = "10.20.0.40"


@pytest.fixture(scope="module")
def prod() -> tuple[StackSpec, Placement, dict[str, str]]:
    spec, placement = load_example("Pulumi.prod.yaml")
    return spec, placement, generate(spec, placement)


def _config(spec: StackSpec) -> HarborConfig:
    """The Harbor config of `spec` as placed."""
    return harbor_config(spec, place(spec))


def _node(placement: Placement) -> Any:
    (node,) = placement.by_role(Role.HARBOR)
    return node


def _step(prod: tuple[StackSpec, Placement, dict[str, str]]) -> Step:
    spec, placement, material = prod
    return harbor_step(harbor_config(spec, placement), _node(placement), material)


# ---- harbor.yml ------------------------------------------------------------------------------------


def test_prod_harbor_yml_validates_against_the_strict_model(prod: tuple[StackSpec, Placement, dict[str, str]]) -> None:
    spec, placement, material = prod
    text = harbor_yml(harbor_config(spec, placement), _node(placement), material)
    loaded = yaml.safe_load(text)
    parsed = HarborYml.model_validate(loaded)
    assert parsed == harbor_yml_model(harbor_config(spec, placement), material)  # the template writes every field as is
    assert set(loaded) == {f.alias or name for name, f in HarborYml.model_fields.items()}
    assert parsed.hostname == HARBOR_IP  # what the nodes use (harbor_registry_host)
    assert loaded["_version"] == "2.12.0" == config_version(_config(spec))
    assert parsed.harbor_admin_password == material[m.HARBOR_ADMIN_PASSWORD]
    assert parsed.database.password == material[m.HARBOR_DB_PASSWORD]
    assert (parsed.https.certificate, parsed.https.private_key) == (CERT_FILE, KEY_FILE)
    assert parsed.data_volume == "/data"


def _mutations() -> Iterator[tuple[str, Any]]:
    def put(path: str, value: Any) -> Any:
        def apply(doc: dict[str, Any]) -> None:
            *parents, last = path.split(".")
            for key in parents:
                doc = doc[key]
            doc[last] = value
        return apply

    def drop(path: str) -> Any:
        def apply(doc: dict[str, Any]) -> None:
            *parents, last = path.split(".")
            for key in parents:
                doc = doc[key]
            del doc[last]
        return apply

    yield "misspelt key", put("harbor_admin_pasword", "Secret123Secret")
    yield "unknown nested key", put("https.strong_ssl_cipher", True)
    yield "port as text", put("https.port", "443")
    yield "port out of range", put("http.port", 70000)
    yield "missing database password", drop("database.password")
    yield "upstream default admin password", put("harbor_admin_password", "Harbor12345")
    yield "short db password", put("database.password", "root")
    yield "patch in _version", put("_version", "2.12.2")
    yield "loopback hostname", put("hostname", "127.0.0.1")
    yield "relative certificate path", put("https.certificate", "tls.crt")
    yield "unknown log level", put("log.level", "verbose")
    yield "unknown job logger", put("jobservice.job_loggers", ["STDOUT"])
    yield "bool as text", put("upload_purging.enabled", "true")
    yield "missing _version", drop("_version")


@pytest.mark.parametrize(("what", "mutate"), list(_mutations()), ids=[w for w, _ in _mutations()])
def test_the_strict_model_rejects_a_wrong_harbor_yml(prod: tuple[StackSpec, Placement, dict[str, str]],
                                                      what: str, mutate: Any) -> None:
    spec, placement, material = prod
    doc = yaml.safe_load(harbor_yml(harbor_config(spec, placement), _node(placement), material))
    HarborYml.model_validate(doc)  # valid before the change
    mutate(doc)
    with pytest.raises(ValidationError):
        HarborYml.model_validate(doc)


def test_an_old_harbor_is_refused_rather_than_given_a_file_it_cannot_read(
        prod: tuple[StackSpec, Placement, dict[str, str]]) -> None:
    spec, _, _ = prod
    old = spec.model_copy(update={"versions": spec.versions.model_copy(update={"harbor": "2.9.5"})})
    with pytest.raises(ValueError, match=r"^HarborConfig\.version: Harbor 2\.9\.5 is not supported \(2\.10 or later\)"):
        _config(old)  # the config refuses it with the stack's rule
    bypassed = _config(spec)
    object.__setattr__(bypassed, "version", "2.9.5")  # and the renderer on its own
    with pytest.raises(ValueError, match=r"older than the harbor\.yml format"):
        config_version(bypassed)
    newer = spec.model_copy(update={"versions": spec.versions.model_copy(update={"harbor": "v2.13.1"})})
    assert config_version(_config(newer)) == "2.13.0" and install_dir(_config(newer)) == "/opt/harbor-2.13.1"


# ---- the step's files ------------------------------------------------------------------------------


def test_key_and_config_are_private_and_trust_is_what_the_nodes_trust(
        prod: tuple[StackSpec, Placement, dict[str, str]]) -> None:
    spec, placement, material = prod
    files = {f.path: f for f in _step(prod).files}
    assert (files[KEY_FILE].mode, files[KEY_FILE].secret) == ("0600", True)
    assert (files[CONFIG_FILE].mode, files[CONFIG_FILE].secret) == ("0600", True)
    assert files[CERT_FILE].content == material[m.HARBOR_CERT] and not files[CERT_FILE].secret
    node_trust = {f.path: f.content for f in registry_host_files(kubernetes_config(spec, placement), material)}
    assert files[TRUST_FILE].content == node_trust[f"{CERTS_DIR}/{HARBOR_IP}/ca.crt"]
    assert files[TRUST_FILE].content == served_certificate(material)


def test_the_installer_url_version_and_checksum_come_from_the_stack(
        prod: tuple[StackSpec, Placement, dict[str, str]]) -> None:
    spec, placement, material = prod
    env = dict(_step(prod).env)
    assert env["K8SHA_HARBOR_URL"] == (
        "https://github.com/goharbor/harbor/releases/download/v2.12.2/harbor-offline-installer-v2.12.2.tgz")
    assert env["K8SHA_HARBOR_SHA256"] == spec.mirrors.harbor_installer_sha256  # prod's placeholder
    pinned = spec.model_copy(update={"mirrors": spec.mirrors.model_copy(update={
        "harbor_installer": "http://mirror.example/harbor/{version}/installer.tgz",
        "harbor_installer_sha256": "a" * 64})})
    env = dict(harbor_step(harbor_config(pinned, placement), _node(placement), material).env)
    assert env["K8SHA_HARBOR_URL"] == "http://mirror.example/harbor/2.12.2/installer.tgz"
    assert env["K8SHA_HARBOR_SHA256"] == "a" * 64
    assert env["K8SHA_HARBOR_DIR"] == "/opt/harbor-2.12.2"


def test_step_bundles_pass_bash_n_and_shellcheck(prod: tuple[StackSpec, Placement, dict[str, str]],
                                                 tmp_path: Path) -> None:
    shellcheck = require_tool("shellcheck")
    text = bundle(_step(prod))
    assert "# ---- harbor-install.sh ----" in text and "# ---- harbor-remove.sh ----" in text
    script = write(tmp_path / "harbor-bundle.sh", text)
    assert_ok(run(["bash", "-n", str(script)]), "bash -n on the harbor bundle")
    assert_ok(run([shellcheck, "-s", "bash", str(script)]), "shellcheck on the harbor bundle")
    wrapper = CONFIGS / "harbor/harbor-compose.sh"
    assert_ok(run(["bash", "-n", str(wrapper)]), "bash -n on harbor-compose")
    assert_ok(run([shellcheck, str(wrapper)]), "shellcheck on harbor-compose")


def test_shellcheck_can_fail(tmp_path: Path) -> None:
    shellcheck = require_tool("shellcheck")
    bad = write(tmp_path / "bad.sh", "#!/usr/bin/env bash\nrm -rf $1/*\n")
    assert run([shellcheck, str(bad)]).returncode != 0


# ---- the nodes' side: certs.d hosts.toml --------------------------------------------------------------


def test_hosts_toml_parses_and_ca_sits_in_the_host_table(prod: tuple[StackSpec, Placement, dict[str, str]]) -> None:
    """containerd#7118: a top-level `ca` applies to `server` only, never to the mirror hosts."""
    spec, placement, material = prod
    files = {f.path: f.content for f in registry_host_files(kubernetes_config(spec, placement), material)}
    ca_path = f"{CERTS_DIR}/{HARBOR_IP}/ca.crt"
    assert files[ca_path] == served_certificate(material)
    own = tomllib.loads(files[f"{CERTS_DIR}/{HARBOR_IP}/hosts.toml"])
    assert own["server"] == f"https://{HARBOR_IP}" and "ca" not in own
    assert own["host"][f"https://{HARBOR_IP}"]["ca"] == ca_path
    by_project = {p.registry: p.project for p in proxy_cache_projects(_config(spec))}
    assert set(by_project) == set(HARBOR_PROXY_PROJECTS)
    for registry, (project, upstream) in HARBOR_PROXY_PROJECTS.items():
        doc = tomllib.loads(files[f"{CERTS_DIR}/{registry}/hosts.toml"])
        assert doc["server"] == upstream and "ca" not in doc
        (url,) = doc["host"]
        assert url == f"https://{HARBOR_IP}/v2/{by_project[registry]}" == f"https://{HARBOR_IP}/v2/{project}"
        table = doc["host"][url]
        assert table["ca"] == ca_path and table["override_path"] is True
        assert table["capabilities"] == ["pull", "resolve"]


def test_a_ca_outside_the_host_table_is_detected() -> None:
    """The check above can fail: the #7118 mistake parses, and the table then has no `ca`."""
    wrong = ('server = "https://registry-1.docker.io"\nca = "/x/ca.crt"\n'
             '[host."https://h/v2/p"]\n  capabilities = ["pull"]\n')
    doc = tomllib.loads(wrong)
    assert "ca" in doc and "ca" not in doc["host"]["https://h/v2/p"]


# ---- the sandbox -----------------------------------------------------------------------------------------

STUB_DOCKER = r"""#!/bin/bash
# Stand-in for docker in the Harbor script sandbox: records calls, refuses anything unexpected.
state=@STATE@
printf '%s\n' "$*" >>"$state/docker.log"
case "$1" in
  compose)
    shift
    if [ "$1" = version ]; then echo "Docker Compose version v2-stub"; exit 0; fi
    [ -f docker-compose.yml ] || { echo "stub: no docker-compose.yml in $PWD" >&2; exit 1; }
    [ "$1 $2" = "--project-name harbor" ] || { echo "stub: unexpected project: $*" >&2; exit 97; }
    case " $* " in
      *" up -d --remove-orphans "*) echo up >>"$state/compose.log"; rm -f "$state/stopped"
        [ -f "$state/never-healthy" ] || touch "$state/running" ;;
      *" down "*) echo down >>"$state/compose.log"; rm -f "$state/running" "$state/stopped" ;;
      *) echo "stub: unsupported compose call: $*" >&2; exit 97 ;;
    esac ;;
  image)
    [ "$2" = inspect ] || exit 97
    grep -qxF "$3" "$state/images" 2>/dev/null ;;
  load)
    [ "$2" = -i ] || exit 97
    while read -r image; do echo "$image" >>"$state/images"; echo "Loaded image: $image"; done <"$3" ;;
  ps)
    n=0; [ -f "$state/running" ] && n=3
    if [[ " $* " == *" status=running "* ]] && [ -f "$state/stopped" ]; then n=2; fi
    for ((i = 0; i < n; i++)); do echo "container$i"; done ;;
  *) echo "stub docker: unsupported: $*" >&2; exit 97 ;;
esac
"""

STUB_SYSTEMCTL = r"""#!/bin/bash
# Stand-in for systemctl in the Harbor script sandbox: enable/active state in files, harbor.service's
# Exec lines really run (from the installed unit file); anything unexpected is refused.
state=@STATE@
printf '%s\n' "$*" >>"$state/systemctl.log"
args=()
for a in "$@"; do case "$a" in --quiet | -q | --now) ;; *) args+=("$a") ;; esac; done
cmd=${args[0]}
unit=${args[1]:-}
unit_exec() {
  local file=/etc/systemd/system/$unit line dir argv
  [ "$unit" = harbor.service ] || return 0
  [ -f "$file" ] || { echo "stub: $unit not found" >&2; return 5; }
  line=$(sed -n "s/^$1=//p" "$file")
  dir=$(sed -n 's/^WorkingDirectory=//p' "$file")
  [ -n "$line" ] || return 0
  read -ra argv <<<"$line"
  (cd "$dir" && "${argv[@]}")
}
case "$cmd" in
  daemon-reload) ;;
  enable) touch "$state/$unit.enabled" ;;
  disable) rm -f "$state/$unit.enabled" ;;
  is-enabled) [ -f "$state/$unit.enabled" ] ;;
  is-active) [ -f "$state/$unit.active" ] ;;
  start) unit_exec ExecStart && touch "$state/$unit.active" ;;
  stop) unit_exec ExecStop && rm -f "$state/$unit.active" ;;
  restart) unit_exec ExecStop && unit_exec ExecStart && touch "$state/$unit.active" ;;
  reload) [ -f "$state/$unit.active" ] && unit_exec ExecReload ;;
  *) echo "stub systemctl: unsupported: $*" >&2; exit 97 ;;
esac
"""

FAKE_PREPARE = r"""#!/bin/bash
# Stand-in for Harbor's prepare: checks what the real one needs (harbor.yml beside it, its images
# loaded, _version, readable TLS files), then writes docker-compose.yml.
set -euo pipefail
cd "$(dirname "$0")"
[ -f harbor.yml ] || { echo "no config file: harbor.yml"; exit 1; }
docker image inspect goharbor/prepare:v@VERSION@ >/dev/null || { echo "prepare image is not loaded"; exit 1; }
grep -qx '_version: @FORMAT@' harbor.yml || { echo "wrong _version"; exit 1; }
for key in certificate private_key; do
  path=$(sed -n "s/^  $key: \"\(.*\)\"$/\1/p" harbor.yml)
  [ -r "$path" ] || { echo "$key $path is not readable"; exit 1; }
done
echo prepare >>@STATE@/prepare.log
mkdir -p common/config
printf 'version: "2.3"\nservices: {}\n' >docker-compose.yml
"""

TLS_SERVER = r"""
import http.server, json, os, ssl, sys
state, cert, key = sys.argv[1:4]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        healthy = os.path.exists(os.path.join(state, "running"))
        if self.path == "/api/v2.0/health":
            status = "healthy" if healthy else "unhealthy"
            body = json.dumps({"status": status, "components": [{"name": "core", "status": status}]})
        elif self.path == "/api/v2.0/ping":
            body = "Pong"
        else:
            self.send_error(404)
            return
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 443), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
open(os.path.join(state, "server-ready"), "w").close()
server.serve_forever()
"""

SANDBOX = r"""
set -eu
mount --make-rprivate /
for d in @DIRS@; do
  mount -t overlay "harbor-test-$d" -o "lowerdir=/$d,upperdir=@ROOT@/upper/$d,workdir=@ROOT@/work/$d" "/$d"
done
ip link set lo up
rm -f @STATE@/server-ready
@PYTHON@ @ROOT@/tls_server.py @STATE@ @ROOT@/server.crt @ROOT@/server.key &
for _ in $(seq 100); do [ -f @STATE@/server-ready ] && break; sleep 0.05; done
[ -f @STATE@/server-ready ] || { echo "TLS stand-in did not start" >&2; exit 90; }
export PATH=@ROOT@/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
cd /
"$@"
"""
OVERLAY_DIRS = ("etc", "opt", "usr/local", "var")


class Sandbox:
    """A throwaway Harbor host: every run sees the files earlier runs left (in the overlays)."""

    def __init__(self, root: Path, spec: StackSpec, material: dict[str, str]) -> None:
        self.root, self.state = root, root / "state"
        self.version = spec.versions.harbor.removeprefix("v")
        for d in OVERLAY_DIRS:
            (root / "upper" / d).mkdir(parents=True)
            (root / "work" / d).mkdir(parents=True)
        self.state.mkdir()
        subs = {"@STATE@": str(self.state), "@VERSION@": self.version, "@FORMAT@": config_version(_config(spec)),
                "@ROOT@": str(root), "@PYTHON@": sys.executable, "@DIRS@": " ".join(OVERLAY_DIRS)}

        def fill(text: str) -> str:
            for key, value in subs.items():
                text = text.replace(key, value)
            return text

        for name, text in (("docker", STUB_DOCKER), ("systemctl", STUB_SYSTEMCTL)):
            path = write(root / "bin" / name, fill(text))
            path.chmod(0o755)
        write(root / "tls_server.py", TLS_SERVER)
        write(root / "server.crt", served_certificate(material))
        write(root / "server.key", material[m.HARBOR_KEY])
        self.sandbox = fill(SANDBOX)
        self.installer = root / "harbor-offline-installer.tgz"
        self.installer.write_bytes(self._installer(fill(FAKE_PREPARE)))
        self.sha256 = hashlib.sha256(self.installer.read_bytes()).hexdigest()

    def _installer(self, prepare: str) -> bytes:
        names = ("prepare", "harbor-core", "harbor-db", "nginx-photon")
        images = "".join(f"goharbor/{name}:v{self.version}\n" for name in names)
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w:gz") as tar:
            for name, text, mode in (("harbor/prepare", prepare, 0o755),
                                     (f"harbor/harbor.v{self.version}.tar.gz", images, 0o644),
                                     ("harbor/install.sh", "#!/bin/bash\nexit 1\n", 0o755),
                                     ("harbor/harbor.yml.tmpl", "hostname: reg.mydomain.com\n", 0o644)):
                data = text.encode()
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.uid, info.gid = len(data), mode, 1000, 1000
                tar.addfile(info, io.BytesIO(data))
        return out.getvalue()

    def step(self, step: Step, **env: str) -> Step:
        """`step` fetching the sandbox's installer (file://), with `env` overrides."""
        values = dict(step.env) | {"K8SHA_HARBOR_URL": self.installer.as_uri(),
                                   "K8SHA_HARBOR_SHA256": self.sha256, "K8SHA_HARBOR_WAIT_S": "30"} | env
        return dataclasses.replace(step, env=tuple(values.items()))

    def run(self, step: Step, action: str = "apply") -> Any:
        script = write(self.root / f"bundle-{action}.sh", bundle(step))
        return self.exec("bash", str(script), action)

    def exec(self, *argv: str) -> Any:
        return run(["unshare", "--mount", "--net", "--pid", "--fork", "--mount-proc",
                    "bash", "-c", self.sandbox, "sandbox", *argv])

    def upper(self, path: str) -> Path:
        return self.root / "upper" / path.lstrip("/")

    def log(self, name: str) -> list[str]:
        path = self.state / f"{name}.log"
        return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def sandbox(prod: tuple[StackSpec, Placement, dict[str, str]], tmp_path: Path) -> Sandbox:
    require_root("the Harbor sandbox uses mount, network and PID namespaces (unshare)")
    for tool in ("unshare", "ip", "curl", "sha256sum", "tar"):
        require_tool(tool)
    spec, _, material = prod
    return Sandbox(tmp_path, spec, material)


def _ok(result: Any, what: str) -> str:
    assert_ok(result, what)
    return str(result.stdout)


def test_install_then_a_second_run_changes_nothing(prod: tuple[StackSpec, Placement, dict[str, str]],
                                                   sandbox: Sandbox) -> None:
    spec, placement, material = prod
    step = sandbox.step(_step(prod))
    first = _ok(sandbox.run(step), "first run")
    assert "file(s) changed" in first
    directory = install_dir(_config(spec))
    assert sandbox.log("prepare") == ["prepare"] and sandbox.log("compose") == ["up"]
    docker = sandbox.log("docker")
    assert f"load -i {directory}/harbor.v{sandbox.version}.tar.gz" in docker
    assert "compose --project-name harbor --file docker-compose.yml up -d --remove-orphans" in docker
    systemctl = sandbox.log("systemctl")
    assert "enable harbor.service" in systemctl and "start harbor.service" in systemctl
    assert (sandbox.state / "harbor.service.enabled").exists()
    installed = sandbox.upper(f"{directory}/harbor.yml")
    assert installed.read_text() == harbor_yml(harbor_config(spec, placement), _node(placement), material)
    assert stat.S_IMODE(installed.stat().st_mode) == 0o600
    assert stat.S_IMODE(sandbox.upper(KEY_FILE).stat().st_mode) == 0o600
    assert sandbox.upper(UNIT_FILE).read_text() == harbor_unit(_config(spec))
    assert sandbox.upper(f"{directory}/prepare").stat().st_uid == 0  # --no-same-owner

    calls_before = len(sandbox.log("systemctl"))
    second = _ok(sandbox.run(step), "second run")
    assert second.strip().endswith("k8s-ha harbor: no changes"), second
    assert sandbox.log("prepare") == ["prepare"] and sandbox.log("compose") == ["up"]
    assert sandbox.log("docker").count(f"load -i {directory}/harbor.v{sandbox.version}.tar.gz") == 1
    later = sandbox.log("systemctl")[calls_before:]
    assert later and not [c for c in later if c.split()[0] in ("start", "stop", "restart", "reload")], later


def test_changed_configuration_prepares_again_and_restarts_once(prod: tuple[StackSpec, Placement, dict[str, str]],
                                                                 sandbox: Sandbox) -> None:
    spec, placement, material = prod
    _ok(sandbox.run(sandbox.step(_step(prod))), "install")
    rotated = dict(material, **{m.HARBOR_DB_PASSWORD: "AnotherDbPassword42"})
    changed = sandbox.step(harbor_step(harbor_config(spec, placement), _node(placement), rotated))
    result = sandbox.run(changed)
    assert_ok(result, "run with a changed harbor.yml")
    assert f"updated {CONFIG_FILE}" in result.stderr and "restarted harbor.service" in result.stderr
    assert sandbox.log("prepare") == ["prepare", "prepare"]
    assert sandbox.log("compose") == ["up", "down", "up"]
    assert sandbox.log("systemctl").count("restart harbor.service") == 1
    assert "AnotherDbPassword42" in sandbox.upper(f"{install_dir(_config(spec))}/harbor.yml").read_text()
    assert _ok(sandbox.run(changed), "settled").strip().endswith("no changes")
    assert sandbox.log("prepare") == ["prepare", "prepare"]


def test_stopped_containers_are_brought_back(prod: tuple[StackSpec, Placement, dict[str, str]],
                                             sandbox: Sandbox) -> None:
    step = sandbox.step(_step(prod))
    _ok(sandbox.run(step), "install")
    (sandbox.state / "stopped").touch()  # one of Harbor's containers exited
    out = _ok(sandbox.run(step), "run with a stopped container")
    assert "1 file(s) changed" in out
    assert sandbox.log("compose") == ["up", "up"] and "reload harbor.service" in sandbox.log("systemctl")
    assert sandbox.log("prepare") == ["prepare"]  # nothing to prepare: the configuration is the same
    assert _ok(sandbox.run(step), "settled").strip().endswith("no changes")


def test_a_missing_checksum_is_refused_before_anything_is_done(prod: tuple[StackSpec, Placement, dict[str, str]],
                                                               sandbox: Sandbox) -> None:
    result = sandbox.run(sandbox.step(_step(prod), K8SHA_HARBOR_SHA256=""))
    assert result.returncode != 0
    assert "mirrors.harborInstallerSha256 is not set" in result.stderr
    assert not sandbox.log("docker") and not sandbox.upper("/opt/harbor-2.12.2").exists()
    assert not sandbox.upper(CONFIG_FILE).exists()


def test_a_wrong_checksum_leaves_nothing_unpacked(prod: tuple[StackSpec, Placement, dict[str, str]],
                                                 sandbox: Sandbox) -> None:
    result = sandbox.run(sandbox.step(_step(prod), K8SHA_HARBOR_SHA256="0" * 64))
    assert result.returncode != 0 and "checksum mismatch" in result.stderr
    assert f"got {sandbox.sha256}" in result.stderr
    assert not sandbox.upper("/opt/harbor-2.12.2").exists() and not sandbox.log("prepare")


def test_an_unmounted_data_disk_stops_the_install(prod: tuple[StackSpec, Placement, dict[str, str]],
                                                  sandbox: Sandbox) -> None:
    fstab = Path("/etc/fstab").read_text() if Path("/etc/fstab").exists() else ""
    write(sandbox.upper("/etc/fstab"), fstab + "LABEL=data /data ext4 defaults,nofail 0 2\n")
    result = sandbox.run(sandbox.step(_step(prod)))
    assert result.returncode != 0 and "/data is in /etc/fstab but not mounted" in result.stderr
    assert not sandbox.log("docker")


def test_an_unhealthy_harbor_fails_within_the_bound(prod: tuple[StackSpec, Placement, dict[str, str]],
                                                   sandbox: Sandbox) -> None:
    (sandbox.state / "never-healthy").touch()
    result = sandbox.run(sandbox.step(_step(prod), K8SHA_HARBOR_WAIT_S="3"))
    assert result.returncode != 0
    assert "Harbor is not healthy at https://10.20.0.40/api/v2.0/health after 3s" in result.stderr
    assert "Harbor reports unhealthy" in result.stderr


def test_tls_is_really_verified_against_the_installed_trust(prod: tuple[StackSpec, Placement, dict[str, str]],
                                                            sandbox: Sandbox) -> None:
    spec, placement, _ = prod
    stranger = generate(spec, placement)  # another CA, another Harbor certificate
    step = _step(prod)
    files = tuple(HostFile(f.path, stranger[m.HARBOR_CERT]) if f.path == TRUST_FILE else f for f in step.files)
    result = sandbox.run(sandbox.step(dataclasses.replace(step, files=files), K8SHA_HARBOR_WAIT_S="3"))
    assert result.returncode != 0 and "SSL certificate problem" in result.stderr


def test_remove_takes_harbor_down_and_keeps_its_data(prod: tuple[StackSpec, Placement, dict[str, str]],
                                                     sandbox: Sandbox) -> None:
    spec, _, _ = prod
    step = sandbox.step(_step(prod))
    _ok(sandbox.run(step), "install")
    out = _ok(sandbox.run(step, "delete"), "delete")
    assert sandbox.log("compose")[-1] == "down"
    assert "disable harbor.service" in sandbox.log("systemctl")
    downs = [c for c in sandbox.log("docker") if c.endswith(" down")]
    assert downs and not [c for c in downs if "-v" in c.split() or "--volumes" in c.split()]
    assert not sandbox.upper(UNIT_FILE).exists() and not sandbox.upper(DOCKER_DROPIN).exists()
    assert sandbox.upper(f"{install_dir(_config(spec))}/docker-compose.yml").exists()
    assert sandbox.upper(CONFIG_FILE).exists()
    assert "file(s) changed" in out
    assert _ok(sandbox.run(step, "delete"), "delete again").strip().endswith("no changes")


def test_systemd_accepts_the_unit_and_the_docker_drop_in(prod: tuple[StackSpec, Placement, dict[str, str]],
                                                         sandbox: Sandbox) -> None:
    analyze = require_tool("systemd-analyze")
    _ok(sandbox.run(sandbox.step(_step(prod))), "install")
    # The sandbox has no Docker package: a minimal docker.service stands in for the dependency.
    write(sandbox.upper("/etc/systemd/system/docker.service"),
          "[Unit]\nDescription=stand-in\n[Service]\nExecStart=/bin/true\n")
    # Parse warnings ("Unknown key", "Failed to parse") go to stderr only with the console target,
    # and do not change the exit status: a clean unit must print nothing at all.
    verify = ("env", "SYSTEMD_LOG_TARGET=console", analyze, "verify")
    for unit in ("/etc/systemd/system/harbor.service", "docker.service"):
        result = sandbox.exec(*verify, unit)
        assert_ok(result, f"systemd-analyze verify {unit}")
        assert result.stderr == "", result.stderr
    broken = sandbox.upper(UNIT_FILE)
    broken.write_text(broken.read_text().replace("Type=oneshot", "Type=oneshoot"))
    assert "oneshoot" in sandbox.exec(*verify, "/etc/systemd/system/harbor.service").stderr
    dropin = sandbox.upper(DOCKER_DROPIN)
    dropin.write_text(dropin.read_text().replace("RequiresMountsFor", "RequireMountsFor"))
    assert "RequireMountsFor" in sandbox.exec(*verify, "docker.service").stderr
