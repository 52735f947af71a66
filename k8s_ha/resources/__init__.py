"""Pulumi resources: one module per component, composed by cluster.HaCluster."""
