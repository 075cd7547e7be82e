//! The CPUID a vCPU shows: what the backend supports, with topology for N vCPUs, the APIC ID
//! of each vCPU and the hypervisor bit.

use crate::hypervisor::CpuidEntry;

/// Adjust `supported` for vCPU `id` of `cpus`.
pub fn for_vcpu(supported: &[CpuidEntry], id: u8, cpus: u8) -> Vec<CpuidEntry> {
    supported
        .iter()
        .map(|e| {
            let mut e = *e;
            match e.function {
                1 => {
                    e.ebx = (e.ebx & 0x0000_ffff) | (u32::from(cpus) << 16) | (u32::from(id) << 24);
                    // Hypervisor present.
                    e.ecx |= 1 << 31;
                    if cpus > 1 {
                        e.edx |= 1 << 28; // HTT: more than one logical processor
                    }
                }
                4 => {
                    // Cores per package - 1 in EAX[31:26]; one thread per core.
                    e.eax = (e.eax & 0x03ff_ffff) | (u32::from(cpus.saturating_sub(1)) << 26);
                    e.eax &= !(0xfff << 14);
                }
                0xb | 0x1f => {
                    e.edx = u32::from(id);
                    match e.index {
                        0 => {
                            // SMT level: one thread per core.
                            e.eax = 0;
                            e.ebx = 1;
                            e.ecx = (1 << 8) | e.index;
                        }
                        1 => {
                            // APIC-ID bits that select the core: ceil(log2(cpus)).
                            e.eax = 32 - u32::from(cpus.max(1) - 1).leading_zeros();
                            e.ebx = u32::from(cpus);
                            e.ecx = (2 << 8) | e.index;
                        }
                        _ => {
                            e.eax = 0;
                            e.ebx = 0;
                            e.ecx = e.index;
                        }
                    }
                }
                _ => {}
            }
            e
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apic_id_count_and_hypervisor_bit() {
        let sup = vec![
            CpuidEntry {
                function: 1,
                ebx: 0xffff_0800,
                ..Default::default()
            },
            CpuidEntry {
                function: 0xb,
                index: 1,
                index_significant: true,
                ..Default::default()
            },
        ];
        let v = for_vcpu(&sup, 2, 4);
        assert_eq!(v[0].ebx >> 24, 2);
        assert_eq!((v[0].ebx >> 16) & 0xff, 4);
        assert_eq!(v[0].ebx & 0xffff, 0x0800);
        assert_ne!(v[0].ecx & (1 << 31), 0);
        assert_ne!(v[0].edx & (1 << 28), 0);
        assert_eq!(v[1].edx, 2);
        assert_eq!(v[1].ebx, 4);
        assert_eq!(v[1].eax, 2, "4 logical CPUs need 2 bits of APIC ID");
    }
}
