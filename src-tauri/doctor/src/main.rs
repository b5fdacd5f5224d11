//! The Carekey doctor app (desktop entry point; mobile enters through the library).
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() {
    carekey_doctor::run();
}
