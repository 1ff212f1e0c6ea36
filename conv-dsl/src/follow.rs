//! Which of a plan's values a run starts where the caller's output starts within a cache line.
//!
//! Both backends' buffers for values start at a cache line of [`LINE_F32S`] f32s. A 1×1 plane
//! kernel ([`ir::Plane`]) reads its input and writes its output at the same element offsets, and
//! starts its vector tiles where the input's vectors start at a line (`conv_jit`'s `plane`,
//! `aligned_start`). When the output is the caller's buffer, which need not start at a line (a
//! large `Vec<f32>` starts 16 bytes into a page), its stores then straddle two lines each, unless
//! the input starts at the same place within a line. Measured on the Intel Xeon (AVX-512):
//! sep_c64_56 ran 1.087x faster with its output at a line than 16 bytes past one (`convgen bench`,
//! 8 alternating pairs). So a run (the JIT's, and a `conv!` module's `forward`) moves such an
//! input value's start to the output's offset within its line (`conv_jit::AlignedBuffer`'s
//! movable buffers).

use crate::ir::{self, BufferId, Stmt};
use crate::lower::{Arg, Plan};

/// f32s per cache line (64 bytes), where the backends' value buffers start.
pub const LINE_F32S: u64 = 16;

/// Per value of `plan`: whether a run starts it where the output starts within a line. A value
/// qualifies if an unsplit step's 1×1 plane kernel reads it and writes the output at offsets that
/// agree within a line (every plane a whole number of lines, so each of its planes does), only
/// plane kernels use it (which take any alignment; the tile kernels' channels-last vectors would
/// straddle lines), and no step writes it in runs (the parts of a stage split by channels, whose
/// run boundaries must stay at line boundaries: `conv_jit`'s `AlignedBuffer`).
pub fn follow_output(plan: &Plan) -> Vec<bool> {
    let mut follows = vec![false; plan.values.len()];
    let line = LINE_F32S as i64;
    for step in plan.steps.iter().filter(|step| step.part.is_none()) {
        step.function.visit(&mut |stmt, _| {
            let Stmt::Plane(plane) = stmt else { return };
            let arg = |buffer: BufferId| step.args.get(buffer.0 as usize).copied();
            let (Some(Arg::Value(value)), Some(Arg::Output)) = (arg(plane.input), arg(plane.output)) else { return };
            let [h, w] = plane.input_size;
            let same_offsets = plane.input_index.terms.is_empty()
                && plane.output_index.terms.is_empty()
                && (plane.input_index.offset - plane.output_index.offset).rem_euclid(line) == 0;
            if pointwise_plane(plane) && (h * w).is_multiple_of(LINE_F32S) && same_offsets {
                follows[value] = true;
            }
        });
    }
    for step in &plan.steps {
        // A buffer other kernels use too (values share buffers) stays at its line, as does one
        // written in runs.
        let in_runs = step.part.filter(|part| part.runs.is_some()).map(|part| part.window);
        for (position, arg) in step.args.iter().enumerate() {
            if let Arg::Value(value) = *arg
                && (!only_planes(&step.function) || in_runs == Some(position))
            {
                follows[value] = false;
            }
        }
    }
    follows
}

/// Whether every statement of `function` is a plane kernel's (or a loop around them).
fn only_planes(function: &ir::Function) -> bool {
    let mut only = true;
    function.visit(&mut |stmt, _| only &= matches!(stmt, Stmt::Plane(_) | Stmt::Loop { .. }));
    only
}

/// Whether `plane` reads each output position's own input position: a 1×1 window, stride 1, no
/// padding.
fn pointwise_plane(plane: &ir::Plane) -> bool {
    plane.kernel == 1 && plane.stride == 1 && plane.padding == [0, 0] && plane.input_size == plane.output_size
}

#[cfg(test)]
mod tests {
    use crate::lower::{Arg, lower};
    use crate::schedule::Target;
    use crate::{bind, compile_source};

    use super::follow_output;

    /// A depthwise layer then a pointwise one on the plane kernels, in the user's layout: the
    /// value between them follows the output.
    #[test]
    fn the_input_of_a_pointwise_plane_kernel_writing_the_output_follows_it() {
        let network = compile_source(
            "sep.conv",
            "input x: [1, 16, 32, 32];
             depthwise d(x) { kernel: 3, pad: 1, act: relu6 }
             pointwise p(d) { out: 24, act: relu6 }",
        )
        .expect("the model is valid");
        let binding = bind(&network, &[1, 16, 32, 32]).expect("binds");
        let target = Target { microkernels: true, ..Target::CRANELIFT_X86_64 };
        let plan = lower(&network, &binding, target, &|_| None).expect("lowers");
        let last = plan.steps.last().expect("steps");
        let Some(&Arg::Value(input)) = last.args.first() else { panic!("`p` reads a value: {:?}", last.args) };
        let expected: Vec<bool> = (0..plan.values.len()).map(|value| value == input).collect();
        assert_eq!(follow_output(&plan), expected);
        // Split, the depthwise stage's parts write windows of rows (not runs): it still follows.
        let split =
            lower(&network, &binding, Target { threads: 2, part_macs: 0, ..target }, &|_| None).expect("lowers");
        assert!(split.steps.iter().any(|step| step.part.is_some_and(|part| part.runs.is_none())), "split by rows");
        assert_eq!(follow_output(&split), expected);
    }
}
