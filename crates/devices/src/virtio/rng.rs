//! virtio-rng: fills the driver's buffers from the host's getrandom().

use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestMemoryBackend};

use super::{VirtioDevice, VirtioError};
use crate::GuestMem;

/// The entropy device.
#[derive(Debug, Default)]
pub struct Rng {
    /// Bytes handed to the guest.
    pub bytes_served: u64,
}

impl Rng {
    /// A new device.
    pub fn new() -> Self {
        Rng::default()
    }
}

fn host_random(buf: &mut [u8]) {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: getrandom writes at most the remaining length into our buffer.
        let n = unsafe { libc::getrandom(buf[done..].as_mut_ptr().cast(), buf.len() - done, 0) };
        if n <= 0 {
            break;
        }
        done += n as usize;
    }
}

impl VirtioDevice for Rng {
    fn device_type(&self) -> u32 {
        4
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[256]
    }

    fn features(&self) -> u64 {
        0
    }

    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        vec![("bytes_served", self.bytes_served)]
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
        let mut used = false;
        while let Some(chain) = q.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            let mut written = 0u32;
            for desc in chain.writable() {
                let mut buf = vec![0u8; desc.len() as usize];
                host_random(&mut buf);
                if mem.check_range(desc.addr(), buf.len()) {
                    mem.write_slice(&buf, desc.addr())
                        .map_err(|e| VirtioError::BadRequest {
                            queue,
                            message: e.to_string(),
                        })?;
                    written += desc.len();
                }
            }
            self.bytes_served += u64::from(written);
            q.add_used(mem, head, written)
                .map_err(|e| VirtioError::Queue {
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
    use vm_memory::GuestAddress;

    #[test]
    fn fills_writable_buffers_with_random_bytes() {
        let mem = new_mem();
        let dq = DriverQueue::new(0x10000, 8);
        let mut q = dq.queue(&mem);
        write_desc(&mem, dq.desc, 0, 0x40000, 64, WRITE | NEXT, 1);
        write_desc(&mem, dq.desc, 1, 0x41000, 64, WRITE, 0);
        dq.publish(&mem, &[0]);
        let mut rng = Rng::new();
        assert!(rng
            .process_queue(0, std::slice::from_mut(&mut q), &mem)
            .unwrap());
        assert_eq!(dq.used_elem(&mem, 0), (0, 128));
        let mut a = [0u8; 64];
        mem.read_slice(&mut a, GuestAddress(0x40000)).unwrap();
        assert!(a.iter().any(|&b| b != 0), "random bytes written");
        assert_eq!(rng.bytes_served, 128);
        assert!(
            !rng.process_queue(0, std::slice::from_mut(&mut q), &mem)
                .unwrap(),
            "nothing new"
        );
    }
}
