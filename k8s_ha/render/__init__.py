"""Pure renderers: a layer's plain-value config + material -> the exact files and scripts a host receives.

Each layer's config (`FrontDoor`, `EtcdConfig`, `KubernetesConfig`, `HarborConfig`, ...) is derived
from a stack by one function (`front_door(spec, placement)`, `etcd_config(...)`, ...) or built by a
component's user directly. The Pulumi components and the `render` CLI call the same functions, so
what the CLI writes is what a host gets, except that the CLI shows placeholders for secret material.
"""
