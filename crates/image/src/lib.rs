//! The OCI image store (an OCI image layout under the root dir), manifests and configs, layer
//! apply/diff with whiteouts, the Containerfile builder, the registry client, import/export and
//! image-to-ext4 for VMs.

pub mod archive;
pub mod build;
pub mod commit;
pub mod digest;
pub mod disk;
pub mod extract;
pub mod fuzzing;
pub mod gc;
pub mod import;
pub mod layer;
pub mod manifest;
pub mod reference;
pub mod registry;
pub mod rootfs;
pub mod store;

pub use build::cache::build_cache_roots;
pub use commit::{commit_image, LayerRef, LayerWriter};
pub use extract::{extract, DevicePolicy, ExtractError, ExtractPolicy, WhiteoutMode};
pub use reference::ImageRef;
pub use store::{Image, ImageStore, ImageSummary, StoreError};
