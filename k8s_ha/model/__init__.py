"""The typed stack model and its validation: the bottom layer, no Pulumi engine needed."""
