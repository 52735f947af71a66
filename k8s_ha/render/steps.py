"""A step = one idempotent script plus the files it installs, run as root on one host.

`bundle()` turns a step into the single text sent to the host on stdin (by pulumi-command, or by
the lab over ssh): the shared library, every file base64-staged, then the step's own script. The
script installs staged files only when they differ and restarts only what changed, so running a
bundle twice changes nothing the second time.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from k8s_ha.render.templating import read, render


@dataclass(frozen=True)
class HostFile:
    path: str
    content: str
    mode: str = "0644"
    owner: str = "root:root"
    secret: bool = False


def secret_file(path: str, content: str, owner: str = "root:root") -> HostFile:
    """Private keys, tokens and files that embed them: readable by `owner` only, secret in Pulumi."""
    return HostFile(path, content, mode="0600", owner=owner, secret=True)


@dataclass(frozen=True)
class Step:
    """`script` names a file under configs/scripts/; `env` values are exported before it runs."""

    name: str
    host: str
    script: str
    files: tuple[HostFile, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    delete_script: str | None = None
    libs: tuple[str, ...] = ()  # shell libraries from configs/scripts/, after lib.sh and the env

    @property
    def secret(self) -> bool:
        return any(f.secret for f in self.files)


def bundle(step: Step) -> str:
    """The full text a host runs for `step`: `bash -s apply` installs, `bash -s delete` undoes."""
    files = [
        {
            "path": f.path,
            "mode": f.mode,
            "owner": f.owner,
            "b64": base64.encodebytes(f.content.encode()).decode().rstrip("\n"),
        }
        for f in step.files
    ]
    return render(
        "scripts/bundle.sh.j2",
        step=step.name,
        host=step.host,
        lib=read("scripts/lib.sh"),
        files=files,
        env=list(step.env),
        libs=[(name, read(f"scripts/{name}")) for name in step.libs],
        apply_script=step.script,
        body=read(f"scripts/{step.script}"),
        delete_script=step.delete_script,
        delete_body=read(f"scripts/{step.delete_script}") if step.delete_script else "",
    )


def remote_command(action: str, label: str) -> str:
    """The command pulumi-command runs; the bundle comes on stdin. `label` (step and content
    hash) makes a changed bundle visible in `pulumi preview` without showing its secrets."""
    return f"# k8s-ha {label}\nK8SHA_ACTION={action}\n{read('scripts/as-root.sh')}"


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
