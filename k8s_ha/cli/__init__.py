"""The k8s-ha offline CLI."""
