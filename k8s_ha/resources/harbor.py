"""HarborRegistry: Harbor on its host, then its proxy-cache projects and the cluster's robot account.

1. The harbor step (k8s_ha/render/harbor.py) on the Harbor host, after the host's readiness
   step and `after`. Its bundle is rendered from the resolved certificate, key and passwords, so
   it also waits for them (and changes, in place, when they change).
2. A `pulumiverse_harbor.Provider` that talks to https://<the name the nodes use> as admin, with
   TLS verification on (`insecure=False`; the provider's default is to skip it). It depends on
   the harbor step, which ends only once Harbor's API answers healthy.
3. With harbor.proxyCache: one registry endpoint and one public proxy-cache project per upstream
   that the nodes' containerd mirrors through Harbor (`HARBOR_PROXY_PROJECTS`, same names).
   Public, because containerd pulls anonymously (certs.d hosts.toml carries no credentials).
4. A system robot account with pull on those projects and `library`, for imagePullSecrets; its
   secret is generated here (pulumi-random) so it is known, stable and always secret.

Trust: the provider offers no CA input (its HTTP client uses the system roots), so the machine
running Pulumi must trust Harbor's CA: docs/harbor.md, "The Pulumi side".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import pulumi
import pulumi_command as command
import pulumi_random as random
import pulumiverse_harbor as harbor

from k8s_ha.model.errors import Problem
from k8s_ha.model.spec import HarborSpec
from k8s_ha.model.validation import PlainCheck, refuse_unknown_fields
from k8s_ha.render import material as m
from k8s_ha.render.harbor import (
    HarborConfig,
    harbor_step,
    harbor_url,
    password_problem,
    proxy_cache_projects,
    robot_projects,
)
from k8s_ha.render.members import nodes_of
from k8s_ha.resources.remote import resolve, secret
from k8s_ha.resources.target import Target, claim_machines

ADMIN_USER = "admin"
ROBOT_SECRET_LENGTH = 32


@refuse_unknown_fields
@dataclass(frozen=True)
class HarborRegistryArgs:
    """The Harbor machine, what to install there, its TLS certificate and key, its passwords.

    The certificate must be valid for `config.host`: the nodes and this program's provider
    reach Harbor by that name and trust exactly this certificate.
    """

    host: Target
    config: HarborConfig
    tls_cert: pulumi.Input[str]
    tls_key: pulumi.Input[str]
    admin_password: pulumi.Input[str]  # 8 or more characters, not Harbor's published default
    db_password: pulumi.Input[str]  # the same rule (harbor.yml's database.password)
    after: Sequence[pulumi.Resource] = ()

    def __post_init__(self) -> None:
        """Wrong input fails here, so a component never starts registering from it: the machine
        named and addressed as the stack's Harbor node, and passwords given as text as harbor.yml
        takes them (the config checked itself when it was built). Passwords that are Outputs
        (generated, or read as secrets) are checked by the same rule once known."""
        check = PlainCheck(type(self).__name__, python_names=True)
        check.fields(HarborSpec, {"node": nodes_of([self.host])[0]}, renamed={"node": "host"})
        for name in ("admin_password", "db_password"):
            password = getattr(self, name)
            if isinstance(password, str) and (problem := password_problem(password)) is not None:
                check.add([Problem(name, problem)])
        check.done()


class HarborRegistry(pulumi.ComponentResource):
    step: command.remote.Command
    provider: harbor.Provider
    registries: dict[str, harbor.Registry]
    projects: dict[str, harbor.Project]
    robot: harbor.RobotAccount

    def __init__(self, name: str, args: HarborRegistryArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        claim_machines("a Harbor host", f"HarborRegistry {name!r}", [args.host])
        super().__init__("k8s-ha:harbor:HarborRegistry", name, None, opts)
        config, host = args.config, args.host
        self.admin_password = secret(args.admin_password)
        material = resolve({
            m.HARBOR_CERT: pulumi.Output.from_input(args.tls_cert),
            m.HARBOR_KEY: secret(args.tls_key),
            m.HARBOR_ADMIN_PASSWORD: self.admin_password,
            m.HARBOR_DB_PASSWORD: secret(args.db_password),
        })
        self.step = host.step(f"{host.name}-harbor", partial(harbor_step, config, host), material,
                              parent=self, after=args.after)
        self.url: pulumi.Output[str] = pulumi.Output.from_input(harbor_url(config))
        # What Harbor serves, and what clients must trust: public, whatever secret it came with.
        self.ca_certificate: pulumi.Output[str] = pulumi.Output.unsecret(pulumi.Output.from_input(args.tls_cert))
        self.provider = harbor.Provider(
            f"{name}-provider",
            url=self.url,
            username=ADMIN_USER,
            password=self.admin_password,
            insecure=False,
            api_version=2,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.step]),
        )
        on_harbor = pulumi.ResourceOptions(parent=self, provider=self.provider)
        self.registries, self.projects = {}, {}
        self.proxy_projects = [proxy.project for proxy in proxy_cache_projects(config)]
        for proxy in proxy_cache_projects(config):
            endpoint = harbor.Registry(
                f"{name}-upstream-{proxy.project}",
                name=proxy.endpoint_name,
                provider_name=proxy.provider_name,
                endpoint_url=proxy.endpoint,
                description=f"Upstream of the {proxy.project} proxy cache ({proxy.registry}), made by k8s-ha",
                insecure=False,
                opts=on_harbor,
            )
            self.registries[proxy.registry] = endpoint
            self.projects[proxy.registry] = harbor.Project(
                f"{name}-project-{proxy.project}",
                name=proxy.project,
                registry_id=endpoint.registry_id,
                public=True,
                vulnerability_scanning=False,  # no scanner is installed (harbor-install.sh)
                force_destroy=True,  # a cache: its content comes back from the upstream
                opts=on_harbor,
            )
        robot_secret = random.RandomPassword(
            f"{name}-robot-secret",
            length=ROBOT_SECRET_LENGTH,
            special=False,
            min_upper=1,  # Harbor wants an upper and a lower case letter and a digit
            min_lower=1,
            min_numeric=1,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.robot = harbor.RobotAccount(
            f"{name}-robot",
            name=f"{config.cluster}-pull",
            description=f"Pulls for the nodes of cluster {config.cluster}, made by k8s-ha",
            level="system",
            secret=secret(robot_secret.result),
            permissions=[
                harbor.RobotAccountPermissionArgs(
                    kind="project",
                    namespace=project,
                    accesses=[harbor.RobotAccountPermissionAccessArgs(action="pull", resource="repository")],
                )
                for project in robot_projects(config)
            ],
            opts=pulumi.ResourceOptions(parent=self, provider=self.provider, depends_on=list(self.projects.values())),
        )
        # What a layer that pulls through Harbor waits for: Harbor healthy and its caches defined.
        self.ready: list[pulumi.Resource] = [self.step, *self.projects.values()]
        self.robot_name: pulumi.Output[str] = self.robot.full_name
        self.robot_secret = secret(robot_secret.result)
        self.register_outputs({
            "url": self.url,
            "adminPassword": self.admin_password,
            "caCertificate": self.ca_certificate,
            "robotName": self.robot_name,
            "robotSecret": self.robot_secret,
        })

    def exports(self) -> dict[str, pulumi.Output[str] | list[str]]:
        """What the stack should export for Harbor (docs/harbor.md)."""
        return {
            "harborUrl": self.url,
            "harborAdminPassword": self.admin_password,
            "harborCaCertificate": self.ca_certificate,
            "harborRobotName": self.robot_name,
            "harborRobotSecret": self.robot_secret,
            "harborProxyProjects": self.proxy_projects,
        }
