//! Disk images for corral VMs: raw/sparse files and qcow2 (backing files, copy-on-write).
