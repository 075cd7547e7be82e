//! corral's software x86-64 CPU: a second implementation of the vmm's vCPU boundary
//! (decode with iced-x86, a cache of decoded blocks, paging, interrupts, LAPIC/IOAPIC).
