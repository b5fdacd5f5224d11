//! The Carekey patient app (desktop entry point; mobile enters through the library).
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() {
    carekey_patient::run();
}
