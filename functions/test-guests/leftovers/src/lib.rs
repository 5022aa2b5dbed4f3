//! Test guest: reports what an earlier call left behind in its instance, then leaves traces of
//! its own: a static counter, a buffer in its data section, and fresh heap memory. A host that
//! gives every call a fresh instance (memory reset to the module's image) answers
//! `{"calls":1,"dirty_static":0,"dirty_heap":0}` every time, however often it reuses memory.
use cloudfn_sdk::{Error, WxContext};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU32, Ordering};

static CALLS: AtomicU32 = AtomicU32::new(0);
static mut BUFFER: [u8; 64 * 1024] = [0; 64 * 1024];

#[cloudfn_sdk::function]
fn leftovers(_event: Value, _ctx: &WxContext) -> Result<Value, Error> {
    let calls = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
    // SAFETY: one call at a time runs in an instance.
    let buffer = unsafe { &mut *std::ptr::addr_of_mut!(BUFFER) };
    let dirty_static = buffer.iter().filter(|b| **b != 0).count();
    buffer.fill(0xAB);
    // calloc trusts that memory.grow hands out zeroed pages: reused pages left dirty show here.
    let mut heap = vec![0u8; 2 << 20];
    let dirty_heap = heap.iter().filter(|b| **b != 0).count();
    heap.fill(0xCD);
    std::hint::black_box(&heap);
    Ok(json!({ "calls": calls, "dirty_static": dirty_static, "dirty_heap": dirty_heap }))
}
