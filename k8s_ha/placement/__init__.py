"""Placement of nodes on failure domains and the fault-tolerance analysis."""
