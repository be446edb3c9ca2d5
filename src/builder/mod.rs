//! Image builders (docker CLI, podman, buildah) behind one trait.
