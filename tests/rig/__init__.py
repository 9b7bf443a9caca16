"""The real-Podman test rig: a private Podman service, a local busybox image, real daemons."""
