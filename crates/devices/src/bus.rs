//! The device side of the port-I/O and MMIO buses.

/// A device that answers guest reads and writes in its address range.
///
/// `offset` is relative to the start of the range the device was registered at; `data` is the
/// access (1, 2, 4 or 8 bytes, little-endian). A read must fill all of `data`; unknown
/// registers read as zero (or all ones, as the hardware does) and never panic.
pub trait BusDevice: Send {
    /// A guest read of `data.len()` bytes at `offset`.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// A guest write of `data` at `offset`.
    fn write(&mut self, offset: u64, data: &[u8]);
}
