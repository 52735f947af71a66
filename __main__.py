"""The Pulumi program for `pulumi up`: a thin entry point into the k8s_ha package."""

from k8s_ha.program import pulumi_program

pulumi_program()
