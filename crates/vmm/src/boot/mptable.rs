//! An Intel MultiProcessor Specification 1.4 table, so a kernel without ACPI finds every vCPU,
//! the IOAPIC and the ISA interrupt routing.

use corral_devices::GuestMem;
use vm_memory::{Bytes, GuestAddress};

use super::layout::{IOAPIC_ADDR, IOAPIC_PINS, LAPIC_ADDR};
use super::BootError;

const APIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;

fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)))
}

/// The table's bytes for `cpus` vCPUs, placed at `addr` (floating pointer first).
pub fn build(addr: u64, cpus: u8) -> Vec<u8> {
    let ioapic_id = cpus;
    let mut entries = Vec::new();
    let mut count: u16 = 0;
    for id in 0..cpus {
        let mut e = vec![0u8, id, APIC_VERSION, if id == 0 { 3 } else { 1 }];
        e.extend_from_slice(&0x600u32.to_le_bytes()); // family 6 signature
        e.extend_from_slice(&0x201u32.to_le_bytes()); // FPU + APIC
        e.extend_from_slice(&[0; 8]);
        entries.extend(e);
        count += 1;
    }
    entries.extend_from_slice(&[1, 0, b'I', b'S', b'A', b' ', b' ', b' ']);
    count += 1;
    entries.extend_from_slice(&[2, ioapic_id, IOAPIC_VERSION, 1]);
    entries.extend_from_slice(&(IOAPIC_ADDR as u32).to_le_bytes());
    count += 1;
    for irq in 0..IOAPIC_PINS as u8 {
        // ISA IRQ n on IOAPIC pin n; IRQ 0 is the PIC's ExtINT.
        let kind = if irq == 0 { 3 } else { 0 };
        entries.extend_from_slice(&[3, kind, 0, 0, 0, irq, ioapic_id, irq]);
        count += 1;
    }
    // LINT0 = ExtINT, LINT1 = NMI, on every LAPIC.
    entries.extend_from_slice(&[4, 3, 0, 0, 0, 0, 0xff, 0]);
    entries.extend_from_slice(&[4, 1, 0, 0, 0, 0, 0xff, 1]);
    count += 2;

    let table_addr = addr + 16;
    let mut table = Vec::with_capacity(44 + entries.len());
    table.extend_from_slice(b"PCMP");
    table.extend_from_slice(&((44 + entries.len()) as u16).to_le_bytes());
    table.push(4);
    table.push(0); // checksum, below
    table.extend_from_slice(b"CORRAL  ");
    table.extend_from_slice(b"MICROVM     ");
    table.extend_from_slice(&0u32.to_le_bytes());
    table.extend_from_slice(&0u16.to_le_bytes());
    table.extend_from_slice(&count.to_le_bytes());
    table.extend_from_slice(&(LAPIC_ADDR as u32).to_le_bytes());
    table.extend_from_slice(&0u16.to_le_bytes());
    table.push(0);
    table.push(0);
    table.extend(entries);
    table[7] = checksum(&table);

    let mut fp = Vec::with_capacity(16);
    fp.extend_from_slice(b"_MP_");
    fp.extend_from_slice(&(table_addr as u32).to_le_bytes());
    fp.extend_from_slice(&[1, 4, 0, 0, 0, 0, 0, 0]);
    fp[10] = checksum(&fp);
    fp.extend(table);
    fp
}

/// Write the MP table for `cpus` vCPUs at `addr`.
pub fn write(mem: &GuestMem, addr: u64, cpus: u8) -> Result<(), BootError> {
    let bytes = build(addr, cpus);
    mem.write_slice(&bytes, GuestAddress(addr))
        .map_err(|e| BootError::Memory {
            what: "MP table",
            message: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x))
    }

    #[test]
    fn checksums_and_processor_entries() {
        let t = build(0x9fc00, 4);
        assert_eq!(&t[0..4], b"_MP_");
        assert_eq!(sum(&t[0..16]), 0);
        let table = &t[16..];
        let len = u16::from_le_bytes([table[4], table[5]]) as usize;
        assert_eq!(&table[0..4], b"PCMP");
        assert_eq!(len, table.len());
        assert_eq!(sum(table), 0);
        let cpus = table[44..]
            .chunks(20)
            .take(4)
            .filter(|e| e[0] == 0 && e[3] & 1 == 1)
            .count();
        assert_eq!(cpus, 4);
        assert_eq!(table[44 + 3], 3, "vCPU 0 is the bootstrap processor");
        let entry_count = u16::from_le_bytes([table[34], table[35]]);
        assert_eq!(entry_count, 4 + 1 + 1 + 24 + 2);
    }
}
