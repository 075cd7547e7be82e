//! The i8042 keyboard controller at ports 0x60 (data) and 0x64 (status/command): enough of
//! the controller for Linux's probe to finish at once, and the CPU-reset line that ends a
//! microVM (`reboot=k`).
//!
//! Hand-written rather than vm-superio's `I8042Device`, which only implements the reset
//! command and reads 0 everywhere: Linux then never sees its controller-config byte (CTR)
//! arrive and spends ~10 s of boot in timeouts ("Can't read CTR while initializing i8042").
//! Here the controller answers its own commands (CTR read/write, self-tests, output port);
//! there is no keyboard or mouse behind it, so commands for those go unanswered, as on a
//! controller with nothing plugged in. The one key press it makes is Ctrl-Alt-Del, on IRQ 1,
//! for a guest-cooperative shutdown (as Firecracker's `SendCtrlAltDel`); the guest should boot
//! with `i8042.dumbkbd` so its keyboard driver takes the port without probing a keyboard.

use std::collections::VecDeque;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use vmm_sys_util::eventfd::EventFd;

use crate::interrupt::Interrupt;
use crate::BusDevice;

const DATA: u64 = 0;
const COMMAND: u64 = 4;

/// Status: output buffer full.
const STATUS_OBF: u8 = 1 << 0;
/// Status: system flag (self-test passed).
const STATUS_SYS: u8 = 1 << 2;
/// Status: the last write went to the command port.
const STATUS_CMD: u8 = 1 << 3;
/// Status: keyboard not inhibited (the keylock bit is active low).
const STATUS_UNLOCKED: u8 = 1 << 4;

const CMD_READ_CTR: u8 = 0x20;
const CMD_WRITE_CTR: u8 = 0x60;
const CMD_DISABLE_AUX: u8 = 0xa7;
const CMD_ENABLE_AUX: u8 = 0xa8;
const CMD_SELF_TEST: u8 = 0xaa;
const CMD_KBD_TEST: u8 = 0xab;
const CMD_DISABLE_KBD: u8 = 0xad;
const CMD_ENABLE_KBD: u8 = 0xae;
const CMD_READ_OUTP: u8 = 0xd0;
const CMD_WRITE_OUTP: u8 = 0xd1;
const CMD_WRITE_KBD_OUT: u8 = 0xd2;
const CMD_RESET_CPU: u8 = 0xfe;

/// CTR bits: keyboard and aux interrupts, system flag, disabled ports, translation.
const CTR_DEFAULT: u8 = 0x01 | 0x02 | 0x04 | 0x40;
const CTR_KBD_INT: u8 = 0x01;
/// Ctrl, Alt and Delete pressed, in scan code set 1 (what the guest reads with translation on).
const CTRL_ALT_DEL: [u8; 4] = [0x1d, 0x38, 0xe0, 0x53];
const CTR_KBD_DISABLED: u8 = 0x10;
const CTR_AUX_DISABLED: u8 = 0x20;
/// Output port: bit 0 is the CPU reset line (active low), bit 1 the A20 gate.
const OUTP_DEFAULT: u8 = 0x03;

/// The persisted state of the controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct I8042State {
    /// Controller configuration byte.
    pub ctr: u8,
    /// Output port.
    pub outp: u8,
    /// Bytes waiting for the guest on the data port.
    pub output: Vec<u8>,
    /// A command waiting for its data byte.
    pub pending: Option<u8>,
    /// Whether the last write was a command.
    pub last_was_command: bool,
}

/// The controller.
pub struct I8042 {
    reset: EventFd,
    ctr: u8,
    outp: u8,
    output: VecDeque<u8>,
    pending: Option<u8>,
    last_was_command: bool,
    /// CPU resets the guest asked for.
    pub resets: u64,
    /// Keyboard bytes waiting for the output buffer to empty.
    keyboard: VecDeque<u8>,
    /// IRQ 1, raised when a keyboard byte is ready.
    kbd_irq: Option<Arc<dyn Interrupt>>,
}

impl I8042 {
    /// A controller that signals `reset` when the guest pulses the CPU reset line.
    pub fn new(reset: EventFd) -> Self {
        I8042 {
            reset,
            ctr: CTR_DEFAULT,
            outp: OUTP_DEFAULT,
            output: VecDeque::new(),
            pending: None,
            last_was_command: false,
            resets: 0,
            keyboard: VecDeque::new(),
            kbd_irq: None,
        }
    }

    /// Raise `irq` (IRQ 1) when a keyboard byte is ready.
    pub fn with_keyboard_irq(mut self, irq: Arc<dyn Interrupt>) -> Self {
        self.kbd_irq = Some(irq);
        self
    }

    /// Press Ctrl-Alt-Del: the guest's keyboard driver reads the three keys.
    pub fn ctrl_alt_del(&mut self) {
        self.keyboard.extend(CTRL_ALT_DEL);
        self.feed_keyboard();
    }

    /// Move the next keyboard byte into an empty output buffer and interrupt the guest.
    fn feed_keyboard(&mut self) {
        if !self.output.is_empty() || self.ctr & CTR_KBD_DISABLED != 0 {
            return;
        }
        let Some(b) = self.keyboard.pop_front() else {
            return;
        };
        self.output.push_back(b);
        if self.ctr & CTR_KBD_INT != 0 {
            if let Some(irq) = &self.kbd_irq {
                if let Err(e) = irq.trigger() {
                    tracing::warn!("i8042 keyboard interrupt: {e}");
                }
            }
        }
    }

    /// The controller's state.
    pub fn state(&self) -> I8042State {
        I8042State {
            ctr: self.ctr,
            outp: self.outp,
            output: self.output.iter().copied().collect(),
            pending: self.pending,
            last_was_command: self.last_was_command,
        }
    }

    fn status(&self) -> u8 {
        let mut s = STATUS_SYS | STATUS_UNLOCKED;
        if !self.output.is_empty() {
            s |= STATUS_OBF;
        }
        if self.last_was_command {
            s |= STATUS_CMD;
        }
        s
    }

    fn reset_cpu(&mut self) {
        self.resets += 1;
        if let Err(e) = self.reset.write(1) {
            tracing::warn!("i8042 reset signal: {e}");
        }
    }

    fn command(&mut self, cmd: u8) {
        match cmd {
            CMD_READ_CTR => self.output.push_back(self.ctr),
            CMD_WRITE_CTR | CMD_WRITE_OUTP | CMD_WRITE_KBD_OUT => self.pending = Some(cmd),
            CMD_DISABLE_AUX => self.ctr |= CTR_AUX_DISABLED,
            CMD_ENABLE_AUX => self.ctr &= !CTR_AUX_DISABLED,
            CMD_SELF_TEST => self.output.push_back(0x55),
            CMD_KBD_TEST => self.output.push_back(0x00),
            CMD_DISABLE_KBD => self.ctr |= CTR_KBD_DISABLED,
            CMD_ENABLE_KBD => self.ctr &= !CTR_KBD_DISABLED,
            CMD_READ_OUTP => self.output.push_back(self.outp),
            // 0xf0..=0xff pulse output-port lines low; bit 0 clear pulses the reset line.
            CMD_RESET_CPU => self.reset_cpu(),
            c if c >= 0xf0 && c & 1 == 0 => self.reset_cpu(),
            _ => {}
        }
    }

    fn data(&mut self, byte: u8) {
        match self.pending.take() {
            Some(CMD_WRITE_CTR) => self.ctr = byte,
            Some(CMD_WRITE_OUTP) => {
                self.outp = byte;
                if byte & 1 == 0 {
                    self.reset_cpu();
                }
            }
            Some(CMD_WRITE_KBD_OUT) => self.output.push_back(byte),
            // A byte for the keyboard: nothing is plugged in.
            _ => {}
        }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let v = match offset {
            DATA => {
                let b = self.output.pop_front().unwrap_or(0);
                self.feed_keyboard();
                b
            }
            COMMAND => self.status(),
            _ => 0,
        };
        if let Some(b) = data.first_mut() {
            *b = v;
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&b) = data.first() else {
            return;
        };
        match offset {
            DATA => {
                self.last_was_command = false;
                self.data(b);
            }
            COMMAND => {
                self.last_was_command = true;
                self.command(b);
            }
            _ => {}
        }
        // A re-enabled port or a new CTR may let a waiting key through.
        self.feed_keyboard();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_sys_util::eventfd::EFD_NONBLOCK;

    fn dev() -> (I8042, EventFd) {
        let evt = EventFd::new(EFD_NONBLOCK).unwrap();
        (I8042::new(evt.try_clone().unwrap()), evt)
    }

    fn rd(d: &mut I8042, off: u64) -> u8 {
        let mut b = [0u8];
        d.read(off, &mut b);
        b[0]
    }

    #[test]
    fn reset_command_and_output_port_pulse_the_reset_line() {
        let (mut d, evt) = dev();
        assert!(evt.read().is_err(), "nothing signalled yet");
        d.write(COMMAND, &[CMD_RESET_CPU]);
        assert_eq!(evt.read().unwrap(), 1);
        d.write(COMMAND, &[CMD_WRITE_OUTP]);
        d.write(DATA, &[0x02]);
        assert_eq!(evt.read().unwrap(), 1);
        assert_eq!(d.resets, 2);
    }

    #[test]
    fn linux_probe_sequence_gets_its_answers() {
        let (mut d, evt) = dev();
        assert_eq!(rd(&mut d, COMMAND) & STATUS_OBF, 0, "flush finds nothing");
        d.write(COMMAND, &[CMD_SELF_TEST]);
        assert_ne!(rd(&mut d, COMMAND) & STATUS_OBF, 0);
        assert_eq!(rd(&mut d, DATA), 0x55);
        d.write(COMMAND, &[CMD_READ_CTR]);
        let ctr = rd(&mut d, DATA);
        assert_eq!(ctr, CTR_DEFAULT);
        d.write(COMMAND, &[CMD_WRITE_CTR]);
        d.write(DATA, &[ctr & !0x03]);
        d.write(COMMAND, &[CMD_READ_CTR]);
        assert_eq!(rd(&mut d, DATA), ctr & !0x03);
        d.write(COMMAND, &[CMD_DISABLE_KBD]);
        d.write(COMMAND, &[CMD_READ_CTR]);
        assert_ne!(rd(&mut d, DATA) & CTR_KBD_DISABLED, 0);
        d.write(COMMAND, &[CMD_KBD_TEST]);
        assert_eq!(rd(&mut d, DATA), 0);
        assert_eq!(rd(&mut d, COMMAND) & STATUS_OBF, 0, "buffer drained");
        d.write(DATA, &[0xf2]);
        assert_eq!(rd(&mut d, COMMAND) & STATUS_OBF, 0, "no keyboard answers");
        assert!(evt.read().is_err(), "no reset along the way");
        assert_eq!(d.state().pending, None);
    }

    #[test]
    fn ctrl_alt_del_reaches_the_guest_one_interrupt_per_byte() {
        let (d, _evt) = dev();
        let irq = Arc::new(crate::interrupt::IrqLevel::new(1));
        let mut d = d.with_keyboard_irq(irq.clone());
        // A command's answer waiting in the buffer goes first; the keys follow it.
        d.write(COMMAND, &[CMD_READ_CTR]);
        d.ctrl_alt_del();
        assert_eq!(irq.count(), 0, "the buffer is busy with the CTR");
        assert_eq!(rd(&mut d, DATA), CTR_DEFAULT);
        let mut keys = Vec::new();
        while rd(&mut d, COMMAND) & STATUS_OBF != 0 {
            keys.push(rd(&mut d, DATA));
        }
        assert_eq!(keys, CTRL_ALT_DEL);
        assert_eq!(irq.count(), 4);
        // With the keyboard disabled, keys wait.
        d.write(COMMAND, &[CMD_DISABLE_KBD]);
        d.ctrl_alt_del();
        assert_eq!(rd(&mut d, COMMAND) & STATUS_OBF, 0);
        d.write(COMMAND, &[CMD_ENABLE_KBD]);
        assert_eq!(rd(&mut d, DATA), 0x1d);
    }
}
