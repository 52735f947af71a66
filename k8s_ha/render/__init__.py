"""Pure renderers: (spec, placement, material) -> the exact files and scripts a host receives.

The Pulumi components and the `render` CLI call the same functions, so what the CLI writes is
what a host gets, except that the CLI shows placeholders for secret material.
"""
