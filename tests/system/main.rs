//! QEMU system tests of the Hearth development image (issue 2): the device
//! boots, answers HTTPS with its own certificate, keeps /data across a
//! reboot, has no usable password, and GRUB falls back from a broken slot.
//!
//! They boot `qemu/out/hearth-dev.img` (or `HEARTH_IMAGE`) under TCG; each
//! takes one to a few minutes.

mod board;
mod boot;
mod fallback;
mod floors;
mod image;
mod owner;
mod reset;
mod uboot;
mod update;
