//! The app layer of Carekey: the one Tauri-free crate both apps' commands call.
//!
//! A Tauri command in `src-tauri/patient` or `src-tauri/doctor` does three things: deserialize
//! its arguments into an [`ipc`] type, [`validate`] them, call one function of a session here,
//! and return JSON or an [`AppError`] (`{code, message}`). Everything else (orchestration,
//! saving after every change, locking, background work, display rows, QR) lives here so it is
//! tested, benchmarked and fuzzed without compiling WebKit.
//!
//! - [`error`]: [`AppError`], stable codes and messages a patient understands.
//! - [`validate`]: every argument checked before any work.
//! - [`ipc`]: the argument types of every command, as the UIs send them.
//! - [`display`]: FHIR resources turned into the rows each screen shows.
//! - [`qr`]: QR rendering (SVG) and decoding (images, camera frames), payload routing.
//! - [`share`]: the chosen vault records as share items; the one category mapping.
//! - [`session`]: [`session::PatientApp`] and [`session::DoctorApp`], one method per command.
//! - [`background`]: auto-lock timer, inbox long-poll, doctor-side expiry purge.
//! - [`events`]: what background work reports to the shell.
#![forbid(unsafe_code)]

pub mod background;
pub mod demo;
pub mod display;
pub mod error;
pub mod events;
pub mod ipc;
pub mod qr;
pub mod session;
pub mod share;
pub mod validate;

pub use error::{AppError, Result};
