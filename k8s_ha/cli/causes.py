"""Engine and provider errors cut down to what the user acts on: the provider's own header and the
deepest cause under it, with the fix where the cause is a known one (a libvirt daemon that does not
answer, a node SSH cannot reach, a missing or wrong secrets passphrase).

The texts matched here are the real ones: the engine's "Preview failed: %v" (pulumi pkg/diag), the
"N errors occurred:" / "* " lists of go-multierror that bridged providers return, libvirt's
"failed to connect: dial unix …/libvirt-sock: …" (terraform-provider-libvirt's Config.Client), Go's
"dial tcp ADDR:22: …" (pulumi-command's ssh.Dial) and the passphrase secrets manager's errors.
"""

from __future__ import annotations

import re
from collections.abc import Container, Iterable

_ENGINE_PREFIXES = ("Preview failed: ", "error: ")
_ERROR_COUNT = re.compile(r"\s*\d+ errors? occurred:?\s*$")
_LIBVIRT_SOCKET = re.compile(r"dial unix \S*libvirt-sock\S*: connect: (no such file or directory|connection refused"
                             r"|permission denied)")
_SSH_DIAL = re.compile(r"dial tcp (\[[^\]]+\]|[^\s:\[\]]+):22: ([^\n]+)")
_PASSPHRASE_MISSING = re.compile(r"passphrase must be set with PULUMI_CONFIG_PASSPHRASE|unable to find either "
                                 r"`?PULUMI_CONFIG_PASSPHRASE`? or `?PULUMI_CONFIG_PASSPHRASE_FILE")
_PASSPHRASE_WRONG = re.compile(r"incorrect passphrase")

PASSPHRASE_MISSING = ("the stack's secrets need a passphrase and none was given: set "
                      "PULUMI_CONFIG_PASSPHRASE to it, or PULUMI_CONFIG_PASSPHRASE_FILE to a file that holds it "
                      "(on a terminal you are asked for it)")
PASSPHRASE_WRONG = ("the passphrase given does not decrypt this stack's secrets: set PULUMI_CONFIG_PASSPHRASE "
                    "(or PULUMI_CONFIG_PASSPHRASE_FILE) to the one the stack was created with")
LIBVIRT_HINTS = {
    "no such file or directory": "is libvirtd running? (systemctl start libvirtd)",
    "connection refused": "is libvirtd running? (systemctl start libvirtd)",
    "permission denied": "this user may not open the libvirt socket: run as root or join the libvirt group",
}


def _strip_engine_prefixes(line: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _ENGINE_PREFIXES:
            if line.startswith(prefix):
                line, changed = line.removeprefix(prefix).strip(), True
    return line


def cause(message: str) -> str:
    """The provider's header and its deepest cause on one line, without the engine's framing
    ("Preview failed:", "1 error occurred:", "* " bullets)."""
    lines = []
    for raw in message.splitlines():
        line = _ERROR_COUNT.sub("", _strip_engine_prefixes(raw.strip().removeprefix("* ").strip()))
        if line:
            lines.append(line)
    if not lines:
        return message.strip()
    header, deepest = lines[0], lines[-1]
    text = header if deepest in header else f"{header.rstrip(':')}: {deepest}"
    return with_hint(text)


def with_hint(text: str) -> str:
    """`text`, followed by how to fix its cause when that cause is a known one."""
    found = _LIBVIRT_SOCKET.search(text)
    if found:
        return f"{text} — {LIBVIRT_HINTS[found.group(1)]}"
    return text


def node_of(resource: str, node_names: Iterable[str]) -> str:
    """The node a step belongs to: the longest node name the resource name starts with ("cp1-ready")."""
    matches = [n for n in node_names if resource == n or resource.startswith(f"{n}-")]
    return max(matches, key=len) if matches else resource.split("-", 1)[0]


def ssh_unreachable(resource: str, message: str, node_names: Iterable[str],
                    vm_names: Container[str] = ()) -> str | None:
    """A remote step whose node did not answer SSH, said as what to check; None for other failures.
    For a VM the boot wait is one more thing to check; an existing host was up before the run."""
    found = _SSH_DIAL.search(message)
    if found is None:
        return None
    address, reason = found.group(1).strip("[]"), found.group(2).strip()
    node = node_of(resource, node_names)
    boot = "; ssh.bootTimeoutS if the VM boots slowly" if node in vm_names else ""
    return (f"node {node} ({address}): does not answer SSH from this machine ({reason}): "
            "is it on the stack's network and is sshd running? (nodes[].ip, or nodes[].existing.address for a "
            f"separate management address{boot})")


def passphrase_problem(text: str) -> str | None:
    """One sentence naming the variables when the engine stopped for the secrets passphrase."""
    if _PASSPHRASE_MISSING.search(text):
        return PASSPHRASE_MISSING
    if _PASSPHRASE_WRONG.search(text):
        return PASSPHRASE_WRONG
    return None


def cli_stderr(error: Exception) -> str:
    """What the pulumi CLI wrote to stderr, from an Automation API CommandError (whose text is
    "code: N / stdout: … / stderr: …"), without the code and stdout."""
    text = str(error)
    found = re.search(r"\n stderr: (.*)\Z", text, re.DOTALL)
    return (found.group(1) if found else text).strip()
