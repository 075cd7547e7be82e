//! The OCI image store (an OCI image layout under the root dir), manifests and configs, layer
//! apply/diff with whiteouts, the Containerfile builder, the registry client, import/export and
//! image-to-ext4 for VMs.
