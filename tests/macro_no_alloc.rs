//! The `conv!` module's `forward` allocates nothing: a global allocator that counts allocations
//! made on this test's thread sees none during `forward` (parameters, workspace, input and output
//! are all made before), with either of the model's plans.

// A counting global allocator is unsafe to implement; this test binary is its only user.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The system allocator, counting the allocations of the thread that sets [`COUNTING`].
struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded to `System` as it is; the counters are plain thread-locals
// (const-initialised, so touching them allocates nothing).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.with(|count| count.set(count.get() + 1));
        }
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(pointer, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

convgen::conv! {
    mod block {
        input x: [1, 16, 12, 12];
        conv c(x) { out: 16, kernel: 3, pad: 1, act: relu }
        separable s(c) { out: 24, kernel: 3, stride: 2, pad: 1, act: hardswish }
        pointwise p(s) { out: 24 }
        add r(p, s) { act: relu6 }
    }
}

/// The allocations `run` makes on this thread.
fn allocations(run: impl FnOnce()) -> usize {
    ALLOCATIONS.with(|count| count.set(0));
    COUNTING.with(|counting| counting.set(true));
    run();
    COUNTING.with(|counting| counting.set(false));
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn forward_allocates_nothing() {
    use convgen::PlanFor;
    // Two plans, so that `forward` dispatches on the plan packed.
    let network = convgen::compile_source("block", block::MODEL_SOURCE).expect("the macro's model checks");
    let plan = |host| convgen::conv_dsl::emit_rust::plan(&network, host).expect("lowers");
    assert_ne!(plan(PlanFor::Avx2), plan(PlanFor::Avx512), "the model has two plans");
    let params = block::Params::random(3);
    let mut input = block::new_input();
    for (index, value) in input.iter_mut().enumerate() {
        *value = (index % 17) as f32 / 8.5 - 1.0;
    }
    let mut output = block::new_output();
    // The counter itself works: a `Vec` counts.
    assert_eq!(allocations(|| drop(std::hint::black_box(vec![1u8; 64]))), 1);
    let runs: [(&str, fn(&_, &_, &mut _, &mut _)); 2] =
        [("forward", block::forward), ("forward_portable", block::forward_portable)];
    for host in PlanFor::ALL {
        let packed = block::Packed::with_plan(&params, host);
        let mut workspace = block::Workspace::for_packed(&packed);
        for (label, forward) in runs {
            output.fill(0.0);
            // The first call too: nothing is allocated lazily.
            let count = allocations(|| forward(&input, &packed, &mut output, &mut workspace));
            assert_eq!(count, 0, "{host:?} plan: {label} allocated {count} times");
            assert!(output.iter().any(|&value| value != 0.0), "{host:?} plan: {label} computed something");
        }
    }
    // The defaults agree: the host's plan, packed and allocated for.
    let (packed, mut workspace) = (params.pack(), block::Workspace::new());
    let count = allocations(|| block::forward(&input, &packed, &mut output, &mut workspace));
    assert_eq!(count, 0, "pack() and Workspace::new(): forward allocated {count} times");
}
