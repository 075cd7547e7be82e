//! Legacy PC devices: the 8250 serial port (COM1) and the i8042 controller (for its reset
//! line), both from vm-superio, behind the [`BusDevice`] interface.

use std::io::Write;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use vm_superio::{Serial, SerialState, Trigger};
use vmm_sys_util::eventfd::EventFd;

use crate::{BusDevice, Interrupt, InterruptError};

/// Adapts an [`Interrupt`] to vm-superio's `Trigger`.
pub struct IrqTrigger(pub Arc<dyn Interrupt>);

impl Trigger for IrqTrigger {
    type E = InterruptError;
    fn trigger(&self) -> Result<(), InterruptError> {
        self.0.trigger()
    }
}

/// An eventfd as a vm-superio `Trigger` (the i8042 reset line).
pub struct EventTrigger(pub EventFd);

impl Trigger for EventTrigger {
    type E = std::io::Error;
    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

/// Where the guest's serial output goes.
pub type SerialOut = Box<dyn Write + Send>;

/// The persisted state of the serial port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct SerialDeviceState {
    pub baud_divisor_low: u8,
    pub baud_divisor_high: u8,
    pub interrupt_enable: u8,
    pub interrupt_identification: u8,
    pub line_control: u8,
    pub line_status: u8,
    pub modem_control: u8,
    pub modem_status: u8,
    pub scratch: u8,
    pub in_buffer: Vec<u8>,
}

/// COM1: an 8250 UART on port 0x3f8, output to a writer, input queued by the VMM.
pub struct SerialDevice {
    serial: Serial<IrqTrigger, vm_superio::serial::NoEvents, SerialOut>,
    /// Bytes the guest wrote.
    pub tx_bytes: u64,
}

impl SerialDevice {
    /// A UART raising `irq`, writing to `out`.
    pub fn new(irq: Arc<dyn Interrupt>, out: SerialOut) -> Self {
        SerialDevice {
            serial: Serial::new(IrqTrigger(irq), out),
            tx_bytes: 0,
        }
    }

    /// Queue host input for the guest; returns how many bytes fit in the FIFO.
    pub fn enqueue_input(&mut self, bytes: &[u8]) -> usize {
        self.serial.enqueue_raw_bytes(bytes).unwrap_or(0)
    }

    /// Room left in the receive FIFO.
    pub fn input_room(&self) -> usize {
        self.serial.fifo_capacity()
    }

    /// The state to persist.
    pub fn state(&self) -> SerialDeviceState {
        let s: SerialState = self.serial.state();
        SerialDeviceState {
            baud_divisor_low: s.baud_divisor_low,
            baud_divisor_high: s.baud_divisor_high,
            interrupt_enable: s.interrupt_enable,
            interrupt_identification: s.interrupt_identification,
            line_control: s.line_control,
            line_status: s.line_status,
            modem_control: s.modem_control,
            modem_status: s.modem_status,
            scratch: s.scratch,
            in_buffer: s.in_buffer,
        }
    }
}

impl BusDevice for SerialDevice {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let Some(b) = data.first_mut() {
            *b = self.serial.read(offset as u8);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let Some(&b) = data.first() {
            if offset == 0 {
                self.tx_bytes += 1;
            }
            if let Err(e) = self.serial.write(offset as u8, b) {
                tracing::debug!("serial write: {e:?}");
            }
            if offset == 0 {
                let _ = self.serial.writer_mut().flush();
            }
        }
    }
}

pub use crate::i8042::I8042;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IrqLevel;
    use std::sync::Mutex;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn serial_output_reaches_the_writer_and_input_raises_irq() {
        let irq = Arc::new(IrqLevel::new(4));
        let sink = Sink::default();
        let mut s = SerialDevice::new(irq.clone(), Box::new(sink.clone()));
        for b in b"hi\n" {
            s.write(0, &[*b]);
        }
        assert_eq!(&*sink.0.lock().unwrap(), b"hi\n");
        assert_eq!(s.tx_bytes, 3);
        // Enable the received-data interrupt, then feed a byte.
        s.write(1, &[1]);
        assert_eq!(s.enqueue_input(b"x"), 1);
        assert!(irq.count() >= 1);
        let mut lsr = [0u8];
        s.read(5, &mut lsr);
        assert_eq!(lsr[0] & 1, 1, "data ready");
        let mut rx = [0u8];
        s.read(0, &mut rx);
        assert_eq!(rx[0], b'x');
        assert_eq!(s.state().interrupt_enable, 1);
    }
}
