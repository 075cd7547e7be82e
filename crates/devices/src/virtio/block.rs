//! virtio-blk over a [`DiskImage`]: read, write, flush, discard (hole punching on sparse
//! files), get-ID; read-only disks refuse writes with VIRTIO_BLK_S_IOERR.

use std::io::{Read, Write};

use corral_disk::DiskImage;
use serde::{Deserialize, Serialize};
use virtio_queue::{Queue, QueueT};

use super::{read_config_bytes, VirtioDevice, VirtioError};
use crate::GuestMem;

const SECTOR: u64 = 512;
const F_SEG_MAX: u64 = 1 << 2;
const F_RO: u64 = 1 << 5;
const F_BLK_SIZE: u64 = 1 << 6;
const F_FLUSH: u64 = 1 << 9;
const F_DISCARD: u64 = 1 << 13;

const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;
const T_GET_ID: u32 = 8;
const T_DISCARD: u32 = 11;

const S_OK: u8 = 0;
const S_IOERR: u8 = 1;
const S_UNSUPP: u8 = 2;

/// Length of the device ID string.
pub const ID_LEN: usize = 20;

/// Counters of the block device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockCounters {
    /// Read requests.
    pub reads: u64,
    /// Write requests.
    pub writes: u64,
    /// Flushes.
    pub flushes: u64,
    /// Discards.
    pub discards: u64,
    /// Bytes read.
    pub read_bytes: u64,
    /// Bytes written.
    pub write_bytes: u64,
    /// Requests that failed.
    pub errors: u64,
}

/// A virtio-blk device.
pub struct Block {
    disk: Box<dyn DiskImage>,
    id: [u8; ID_LEN],
    config: Vec<u8>,
    /// Counters.
    pub counters: BlockCounters,
}

impl Block {
    /// A device over `disk` with serial/ID `id` (truncated to 20 bytes).
    pub fn new(disk: Box<dyn DiskImage>, id: &str) -> Self {
        let mut idb = [0u8; ID_LEN];
        let n = id.len().min(ID_LEN);
        idb[..n].copy_from_slice(&id.as_bytes()[..n]);
        let mut config = vec![0u8; 60];
        config[0..8].copy_from_slice(&(disk.size() / SECTOR).to_le_bytes());
        config[12..16].copy_from_slice(&126u32.to_le_bytes()); // seg_max
        config[20..24].copy_from_slice(&512u32.to_le_bytes()); // blk_size
        config[36..40].copy_from_slice(&u32::MAX.to_le_bytes()); // max_discard_sectors
        config[40..44].copy_from_slice(&1u32.to_le_bytes()); // max_discard_seg
        config[44..48].copy_from_slice(&1u32.to_le_bytes()); // discard_sector_alignment
        Block {
            disk,
            id: idb,
            config,
            counters: BlockCounters::default(),
        }
    }

    fn execute(
        &mut self,
        kind: u32,
        sector: u64,
        reader: &mut impl Read,
        writer: &mut virtio_queue::Writer<'_, ()>,
        data_len: usize,
    ) -> Result<u8, String> {
        let offset = sector.checked_mul(SECTOR).ok_or("sector overflow")?;
        let in_range = |len: u64| {
            offset
                .checked_add(len)
                .is_some_and(|e| e <= self.disk.size())
        };
        match kind {
            T_IN => {
                if !in_range(data_len as u64) {
                    return Ok(S_IOERR);
                }
                let mut buf = vec![0u8; data_len];
                self.disk
                    .read_at(&mut buf, offset)
                    .map_err(|e| e.to_string())?;
                writer.write_all(&buf).map_err(|e| e.to_string())?;
                self.counters.reads += 1;
                self.counters.read_bytes += data_len as u64;
                Ok(S_OK)
            }
            T_OUT => {
                let mut buf = Vec::new();
                reader.read_to_end(&mut buf).map_err(|e| e.to_string())?;
                if self.disk.read_only() || !in_range(buf.len() as u64) {
                    return Ok(S_IOERR);
                }
                self.disk
                    .write_at(&buf, offset)
                    .map_err(|e| e.to_string())?;
                self.counters.writes += 1;
                self.counters.write_bytes += buf.len() as u64;
                Ok(S_OK)
            }
            T_FLUSH => {
                self.disk.flush().map_err(|e| e.to_string())?;
                self.counters.flushes += 1;
                Ok(S_OK)
            }
            T_GET_ID => {
                let n = data_len.min(ID_LEN);
                writer.write_all(&self.id[..n]).map_err(|e| e.to_string())?;
                Ok(S_OK)
            }
            T_DISCARD => {
                if self.disk.read_only() {
                    return Ok(S_IOERR);
                }
                let mut seg = [0u8; 16];
                reader.read_exact(&mut seg).map_err(|e| e.to_string())?;
                let start = u64::from_le_bytes(seg[0..8].try_into().unwrap_or_default());
                let count = u32::from_le_bytes(seg[8..12].try_into().unwrap_or_default());
                let (off, len) = (start * SECTOR, u64::from(count) * SECTOR);
                if off.checked_add(len).is_none_or(|e| e > self.disk.size()) {
                    return Ok(S_IOERR);
                }
                self.disk.discard(off, len).map_err(|e| e.to_string())?;
                self.counters.discards += 1;
                Ok(S_OK)
            }
            _ => Ok(S_UNSUPP),
        }
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        2
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[256]
    }

    fn features(&self) -> u64 {
        let ro = if self.disk.read_only() {
            F_RO
        } else {
            F_DISCARD
        };
        F_SEG_MAX | F_BLK_SIZE | F_FLUSH | ro
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let c = &self.counters;
        vec![
            ("reads", c.reads),
            ("writes", c.writes),
            ("flushes", c.flushes),
            ("discards", c.discards),
            ("read_bytes", c.read_bytes),
            ("write_bytes", c.write_bytes),
            ("errors", c.errors),
        ]
    }

    fn process_queue(
        &mut self,
        queue: usize,
        queues: &mut [Queue],
        mem: &GuestMem,
    ) -> Result<bool, VirtioError> {
        let Some(q) = queues.get_mut(queue) else {
            return Ok(false);
        };
        let bad = |message: String| VirtioError::BadRequest { queue, message };
        let mut used = false;
        while let Some(chain) = q.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            let mut reader = chain.clone().reader(mem).map_err(|e| bad(e.to_string()))?;
            let mut writer = chain.writer(mem).map_err(|e| bad(e.to_string()))?;
            let kind: u32 = reader.read_obj().map_err(|e| bad(e.to_string()))?;
            let _reserved: u32 = reader.read_obj().map_err(|e| bad(e.to_string()))?;
            let sector: u64 = reader.read_obj().map_err(|e| bad(e.to_string()))?;
            let data_len = writer.available_bytes().saturating_sub(1);
            if writer.available_bytes() == 0 {
                return Err(bad("no status byte".into()));
            }
            let mut status_writer = writer.split_at(data_len).map_err(|e| bad(e.to_string()))?;
            let status = match self.execute(kind, sector, &mut reader, &mut writer, data_len) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("virtio-blk request type {kind} at sector {sector}: {e}");
                    S_IOERR
                }
            };
            if status != S_OK {
                self.counters.errors += 1;
            }
            status_writer
                .write_all(&[status])
                .map_err(|e| bad(e.to_string()))?;
            let len = (writer.bytes_written() + 1) as u32;
            q.add_used(mem, head, len).map_err(|e| VirtioError::Queue {
                queue,
                message: e.to_string(),
            })?;
            used = true;
        }
        Ok(used)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{new_mem, write_desc, DriverQueue, NEXT, WRITE};
    use super::*;
    use corral_disk::RawDisk;
    use vm_memory::{Bytes, GuestAddress};

    const HDR: u64 = 0x40000;
    const DATA: u64 = 0x41000;
    const STATUS: u64 = 0x42000;

    fn disk(ro: bool) -> (tempfile::TempDir, Block) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.img");
        let mut content = vec![0u8; 1 << 20];
        content[512..516].copy_from_slice(b"ABCD");
        std::fs::write(&p, content).unwrap();
        let b = Block::new(Box::new(RawDisk::open(&p, ro).unwrap()), "corral-test-disk");
        (dir, b)
    }

    /// Submit one 3-descriptor request; returns (status, used length).
    fn request(
        b: &mut Block,
        mem: &GuestMem,
        kind: u32,
        sector: u64,
        data_len: u32,
        data_write: bool,
    ) -> (u8, u32) {
        let dq = DriverQueue::new(0x10000, 8);
        let mut q = dq.queue(mem);
        mem.write_obj(kind, GuestAddress(HDR)).unwrap();
        mem.write_obj(0u32, GuestAddress(HDR + 4)).unwrap();
        mem.write_obj(sector, GuestAddress(HDR + 8)).unwrap();
        mem.write_obj(0xffu8, GuestAddress(STATUS)).unwrap();
        write_desc(mem, dq.desc, 0, HDR, 16, NEXT, 1);
        let flags = if data_write { WRITE | NEXT } else { NEXT };
        write_desc(mem, dq.desc, 1, DATA, data_len, flags, 2);
        write_desc(mem, dq.desc, 2, STATUS, 1, WRITE, 0);
        dq.publish(mem, &[0]);
        assert!(b
            .process_queue(0, std::slice::from_mut(&mut q), mem)
            .unwrap());
        let (head, len) = dq.used_elem(mem, 0);
        assert_eq!(head, 0);
        (mem.read_obj(GuestAddress(STATUS)).unwrap(), len)
    }

    #[test]
    fn read_write_flush_and_id() {
        let mem = new_mem();
        let (_d, mut b) = disk(false);
        assert_eq!(b.device_type(), 2);
        let mut cap = [0u8; 8];
        b.read_config(0, &mut cap);
        assert_eq!(u64::from_le_bytes(cap), 2048);
        assert_ne!(b.features() & F_DISCARD, 0);

        let (s, len) = request(&mut b, &mem, T_IN, 1, 512, true);
        assert_eq!((s, len), (S_OK, 513));
        let mut got = [0u8; 4];
        mem.read_slice(&mut got, GuestAddress(DATA)).unwrap();
        assert_eq!(&got, b"ABCD");

        mem.write_slice(&[0x5a; 512], GuestAddress(DATA)).unwrap();
        assert_eq!(request(&mut b, &mem, T_OUT, 4, 512, false).0, S_OK);
        mem.write_slice(&[0; 512], GuestAddress(DATA)).unwrap();
        assert_eq!(request(&mut b, &mem, T_IN, 4, 512, true).0, S_OK);
        mem.read_slice(&mut got, GuestAddress(DATA)).unwrap();
        assert_eq!(got, [0x5a; 4]);

        let dq_flush = {
            // FLUSH has no data descriptor: header + status.
            let dq = DriverQueue::new(0x20000, 8);
            let mut q = dq.queue(&mem);
            mem.write_obj(T_FLUSH, GuestAddress(HDR)).unwrap();
            write_desc(&mem, dq.desc, 0, HDR, 16, NEXT, 1);
            write_desc(&mem, dq.desc, 1, STATUS, 1, WRITE, 0);
            dq.publish(&mem, &[0]);
            assert!(b
                .process_queue(0, std::slice::from_mut(&mut q), &mem)
                .unwrap());
            mem.read_obj::<u8>(GuestAddress(STATUS)).unwrap()
        };
        assert_eq!(dq_flush, S_OK);

        assert_eq!(request(&mut b, &mem, T_GET_ID, 0, 20, true).0, S_OK);
        let mut id = [0u8; 16];
        mem.read_slice(&mut id, GuestAddress(DATA)).unwrap();
        assert_eq!(&id, b"corral-test-disk");
        assert_eq!(request(&mut b, &mem, 99, 0, 16, true).0, S_UNSUPP);
        assert_eq!(b.counters.reads, 2);
        assert_eq!(b.counters.writes, 1);
        assert_eq!(b.counters.flushes, 1);
    }

    #[test]
    fn out_of_range_and_read_only_fail_with_ioerr() {
        let mem = new_mem();
        let (_d, mut b) = disk(true);
        assert_ne!(b.features() & F_RO, 0);
        assert_eq!(request(&mut b, &mem, T_OUT, 0, 512, false).0, S_IOERR);
        assert_eq!(request(&mut b, &mem, T_IN, 4096, 512, true).0, S_IOERR);
        assert_eq!(request(&mut b, &mem, T_IN, 0, 512, true).0, S_OK);
        assert_eq!(b.counters.errors, 2);
    }

    #[test]
    fn discard_punches_a_hole() {
        let mem = new_mem();
        let (_d, mut b) = disk(false);
        // One discard segment: sector 1, 1 sector, flags 0.
        mem.write_obj(1u64, GuestAddress(DATA)).unwrap();
        mem.write_obj(1u32, GuestAddress(DATA + 8)).unwrap();
        mem.write_obj(0u32, GuestAddress(DATA + 12)).unwrap();
        assert_eq!(request(&mut b, &mem, T_DISCARD, 0, 16, false).0, S_OK);
        assert_eq!(request(&mut b, &mem, T_IN, 1, 512, true).0, S_OK);
        let mut got = [1u8; 4];
        mem.read_slice(&mut got, GuestAddress(DATA)).unwrap();
        assert_eq!(got, [0; 4], "discarded sector reads back as zeros");
        assert_eq!(b.counters.discards, 1);
    }
}
