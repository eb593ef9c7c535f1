"""The name A7's errors carry."""

STAGE = "A7 package"
