//! Control groups, v1 and v2, chosen at run time.

pub mod layout;

pub use layout::{CgroupLayout, CgroupMount, LayoutError};
