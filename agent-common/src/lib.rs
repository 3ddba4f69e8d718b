//! `#[repr(C)]` event types shared by the kernel programs and the agent.
#![no_std]
