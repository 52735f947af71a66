"""k8s-ha: highly available Kubernetes on libvirt VMs, as a Pulumi component library.

Layers, each importing only the ones before it: `model` (typed stack configuration) -> `placement`
(failure domains, the plan) -> `render` (pure: the files and scripts each host receives) ->
`resources` (Pulumi components) -> `cli` and `program` (the entry points).
"""

__version__ = "0.2.0"
