//! A test fixture: a component that exports a plain function and none of the
//! `projector:projection` world. Uploads of it must be refused with `wrong_world`.

/// Adds two numbers: something a component might export, but not a projection.
#[no_mangle]
pub extern "C" fn add(a: i32, b: i32) -> i32 {
    a.wrapping_add(b)
}
