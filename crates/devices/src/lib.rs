//! The device model shared by every CPU backend: the virtio-mmio transport, virtio blk, net,
//! rng, vsock, balloon and console, the 8250 serial port and the i8042 controller. Devices talk
//! to guest memory and an interrupt trait only, so they are unit-testable without KVM.
