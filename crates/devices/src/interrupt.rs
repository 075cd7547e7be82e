//! How a device raises its interrupt, whatever the CPU backend.
//!
//! KVM implements [`Interrupt`] with an irqfd wired to a GSI of the in-kernel IOAPIC; the
//! software CPU with a line into its own IOAPIC. Tests use [`IrqLevel`] to count triggers.

use std::sync::atomic::{AtomicU64, Ordering};

/// Errors raising an interrupt.
#[derive(Debug, thiserror::Error)]
pub enum InterruptError {
    /// Signalling the backend (e.g. writing the irqfd) failed.
    #[error("raising interrupt line {line}: {source}")]
    Signal {
        /// The GSI / IOAPIC pin.
        line: u32,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// An interrupt line a device can pulse (edge-triggered, as virtio-mmio and the serial port use
/// it on a microVM: the guest reads the device's status register to learn why).
pub trait Interrupt: Send + Sync {
    /// Raise the line once.
    fn trigger(&self) -> Result<(), InterruptError>;
    /// The GSI / IOAPIC pin number, for logs and metrics.
    fn line(&self) -> u32;
}

/// An in-memory interrupt line that counts triggers (tests, and backends that poll).
#[derive(Debug, Default)]
pub struct IrqLevel {
    line: u32,
    count: AtomicU64,
}

impl IrqLevel {
    /// A counting line with this number.
    pub fn new(line: u32) -> Self {
        IrqLevel {
            line,
            count: AtomicU64::new(0),
        }
    }

    /// How many times the line was raised.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }
}

impl Interrupt for IrqLevel {
    fn trigger(&self) -> Result<(), InterruptError> {
        self.count.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn line(&self) -> u32 {
        self.line
    }
}
