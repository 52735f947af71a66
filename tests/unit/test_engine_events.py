"""The event printer names the hypervisor behind a failure, with URNs as the real engine writes them
(found out on the engine tier: parented providers' types read `Parent$pulumi:providers:libvirt`, and a
provider reference is `URN::ID`)."""

from __future__ import annotations

import io
from types import SimpleNamespace
from typing import Any

import pytest

from k8s_ha.cli.causes import cause
from k8s_ha.cli.engine import EventPrinter, failure_text

STACK = "urn:pulumi:dev::k8s-ha::"
PROVIDER = STACK + "k8s-ha:index:HaCluster$pulumi:providers:libvirt::hv-local"
DOMAIN = STACK + "k8s-ha:index:HaCluster$k8s-ha:index:WorkerPool$libvirt:index/domain:Domain::w1-domain"
URI = "qemu+ssh://root@10.0.0.1/system"


def event(**fields: Any) -> SimpleNamespace:
    names = ("resource_pre_event", "res_outputs_event", "res_op_failed_event", "diagnostic_event", "summary_event")
    return SimpleNamespace(**{name: fields.get(name) for name in names})


def diagnostic(urn: str, message: str) -> SimpleNamespace:
    return event(diagnostic_event=SimpleNamespace(message=message, ephemeral=False, urn=urn, severity="error"))


def printer() -> EventPrinter:
    return EventPrinter(out=io.StringIO(), hypervisor_uris={"local": URI})


def test_a_failed_provider_is_named_by_hypervisor_and_uri() -> None:
    p = printer()
    p(diagnostic(PROVIDER, "1 error occurred:\n\t* failed to connect: dial unix /x: no such file"))
    assert p.errors == [f"hv-local: hypervisor local ({URI}) cannot be used: failed to connect: dial unix /x: "
                        "no such file"]


def test_a_resource_on_that_provider_is_named_too() -> None:
    p = printer()
    meta = SimpleNamespace(urn=DOMAIN, provider=f"{PROVIDER}::04da6b54-80e4-46f7-96ec-b56ff0331ba9",
                           op="create", type="libvirt:index/domain:Domain", diffs=[])
    p(event(resource_pre_event=SimpleNamespace(metadata=meta)))
    p(diagnostic(DOMAIN, "error creating libvirt domain: virError(Code=8)"))
    assert p.errors[0].startswith(f"w1-domain: hypervisor local ({URI}) cannot be used: error creating")


def test_other_failures_are_left_as_the_engine_wrote_them() -> None:
    p = printer()
    p(diagnostic(STACK + "k8s-ha:index:HaCluster$command:remote:Command::lb1-haproxy", "exit status 1"))
    assert p.errors == ["lb1-haproxy: exit status 1"]


# --- every error ends in its cause (message texts as the engine and providers write them) -------------

# pulumi pkg/diag: GetPreviewFailedError "Preview failed: %v"; the bridged libvirt provider returns a
# go-multierror list ("1 error occurred:\n\t* %s\n\n") of terraform-provider-libvirt's
# `fmt.Errorf("failed to connect: %w", err)` around go-libvirt's dial of the daemon socket.
NO_DAEMON = ("Preview failed: 1 error occurred:\n\t* failed to connect: dial unix /var/run/libvirt/libvirt-sock: "
             "connect: no such file or directory\n\n")
LOCAL_URI = "qemu:///system"


def local_printer() -> EventPrinter:
    return EventPrinter(out=io.StringIO(), hypervisor_uris={"local": LOCAL_URI}, node_names=("cp1", "cp10", "lb1"),
                        vm_names=("cp1", "cp10"))


def test_a_hypervisor_whose_daemon_is_not_running_ends_in_the_cause_and_the_fix() -> None:
    p = local_printer()
    p(diagnostic(PROVIDER, NO_DAEMON))
    assert p.errors == [
        f"hv-local: hypervisor local ({LOCAL_URI}) cannot be used: failed to connect: dial unix "
        "/var/run/libvirt/libvirt-sock: connect: no such file or directory — is libvirtd running? "
        "(systemctl start libvirtd)"]


def test_a_socket_this_user_may_not_open_says_so() -> None:
    p = local_printer()
    p(diagnostic(PROVIDER, NO_DAEMON.replace("no such file or directory", "permission denied")))
    assert p.errors[0].endswith("connect: permission denied — this user may not open the libvirt socket: run as "
                                "root or join the libvirt group")


def test_a_provider_error_keeps_its_own_header_with_the_cause() -> None:
    # terraform-provider-libvirt's cloudinit_def.go wraps exec's error in one line
    message = ("1 error occurred:\n\t* error while starting the creation of CloudInit's ISO image: exec: "
               "\"mkisofs\": executable file not found in $PATH\n\n")
    p = local_printer()
    p(diagnostic(PROVIDER, message))
    assert p.errors == [f"hv-local: hypervisor local ({LOCAL_URI}) cannot be used: error while starting the "
                        "creation of CloudInit's ISO image: exec: \"mkisofs\": executable file not found in $PATH"]


def test_a_header_on_a_line_of_its_own_is_joined_to_the_deepest_cause() -> None:
    # the shape of a wrapped error list: a header that ends in the list's count, then the bullets
    message = "Preview failed: creating domain cp1: 2 errors occurred:\n\t* first try refused\n\t* disk is busy\n"
    assert cause(message) == "creating domain cp1: disk is busy"


# pulumi-command's Connection.Dial returns ssh.Dial's error as is: Go's net.OpError text.
@pytest.mark.parametrize("reason", ["connect: connection refused", "i/o timeout", "connect: no route to host"])
def test_a_node_that_does_not_answer_ssh_is_named_with_its_address(reason: str) -> None:
    p = local_printer()
    p(diagnostic(STACK + "k8s-ha:index:HaCluster$command:remote:Command::cp10-ready",
                 f"dial tcp 10.20.0.40:22: {reason}"))
    assert p.errors == [f"cp10-ready: node cp10 (10.20.0.40): does not answer SSH from this machine ({reason}): "
                        "is it on the stack's network and is sshd running? (nodes[].ip, or nodes[].existing.address "
                        "for a separate management address; ssh.bootTimeoutS if the VM boots slowly)"]


def test_an_existing_host_that_does_not_answer_is_not_told_about_boot_waits() -> None:
    """lb1 is an existing host here: it was up before the run, so the VM boot wait is no cause."""
    p = local_printer()
    p(diagnostic(STACK + "k8s-ha:index:HaCluster$command:remote:Command::lb1-ready",
                 "dial tcp 10.20.0.11:22: connect: no route to host"))
    assert p.errors[0].endswith("(nodes[].ip, or nodes[].existing.address for a separate management address)")


def test_any_remote_step_of_a_node_is_attributed_to_it() -> None:
    p = local_printer()
    p(diagnostic(STACK + "k8s-ha:index:HaCluster$command:remote:Command::lb1-haproxy",
                 "dial tcp [fd00::11]:22: connect: connection refused"))
    assert p.errors[0].startswith("lb1-haproxy: node lb1 (fd00::11): does not answer SSH from this machine "
                                  "(connect: connection refused)")


def command_error(stderr: str) -> Exception:
    from pulumi.automation._cmd import CommandResult
    from pulumi.automation.errors import CommandError

    return CommandError(CommandResult(stdout="", stderr=stderr, code=255))


# pulumi pkg/secrets/passphrase, pkg/backend: the secrets manager's errors, as the CLI prints them.
@pytest.mark.parametrize("stderr", [
    'error: constructing secrets manager of type "passphrase": passphrase must be set with '
    "PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE environment variables\n",
    'error: constructing secrets manager of type "passphrase": unable to find either `PULUMI_CONFIG_PASSPHRASE` '
    "or `PULUMI_CONFIG_PASSPHRASE_FILE` when trying to access the Passphrase Secrets Provider; please ensure one "
    "of these environment variables is set to allow the operation to continue\n",
])
def test_a_missing_passphrase_is_one_sentence_naming_the_variables(stderr: str) -> None:
    text = failure_text(printer(), command_error(stderr))
    assert text == ("failed: the stack's secrets need a passphrase and none was given: set PULUMI_CONFIG_PASSPHRASE "
                    "to it, or PULUMI_CONFIG_PASSPHRASE_FILE to a file that holds it (on a terminal you are asked "
                    "for it)")


def test_a_wrong_passphrase_says_which_one_is_wanted() -> None:
    stderr = ("error: incorrect passphrase, please set PULUMI_CONFIG_PASSPHRASE to the correct passphrase or set "
              "PULUMI_CONFIG_PASSPHRASE_FILE to a file containing the passphrase\n")
    assert failure_text(printer(), command_error(stderr)) == (
        "failed: the passphrase given does not decrypt this stack's secrets: set PULUMI_CONFIG_PASSPHRASE (or "
        "PULUMI_CONFIG_PASSPHRASE_FILE) to the one the stack was created with")


def test_other_cli_failures_show_its_stderr_without_the_code_and_stdout_dump() -> None:
    stderr = "warning: something\nerror: could not find plugin\n"
    text = failure_text(printer(), command_error(stderr))
    assert text == "failed:\n  warning: something\n  error: could not find plugin"
