"""The monitor: QEMU's QMP and HMP, for vncd's objects, displays and clients."""
