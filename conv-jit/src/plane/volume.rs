//! Depthwise 3D layers whose window across each plane is 3 × 3 at stride 1 (undilated or of
//! dilation 2): each output plane of a channel's volume is its window's planes in turn, each a
//! pass of the stride-1 stream ([`super::columns`]) over one input plane with that depth tap's
//! 3 × 3 weights. The first pass starts its sums at the bias, each later one at the sums the pass
//! before left in a scratch plane; only the last applies the activation and writes the output
//! plane. A sum so takes the depth taps in order, and each one's 3 × 3 taps in order, as one
//! chain (the sums go to memory between passes as the f32 they are): bit for bit the portable
//! kernel.
//!
//! Tried on an Intel Xeon (Emerald Rapids, AVX-512), not kept: fetching the input plane the next
//! output plane adds into the L2 cache (`prefetcht1` on each of its lines before an output plane's
//! passes) ran dw3d_k3_c32_16x56 0.93× as fast (the build before and that one alternating, 8
//! pairs); one stream per output plane instead of its passes — the window's three input planes
//! together, each three rows behind the one before, so that a sum still takes the depth taps in
//! order (nine sums per column, the taps' weights splatted from memory) — ran 0.87–0.90× as fast
//! as the passes in a C copy of both over 32 channels (0.7–1.0× over 4).
//!
//! Other depthwise windows of a 3D layer, and grouped ones, take the portable kernel (the
//! lowering chooses the plane kernel by default only for these: `conv_dsl::ir`'s
//! `PLANE_VOLUME_ROWS`).

use super::columns::{self, ColumnGroups, Stream};
use super::stream::Plane;
use super::{Lanes, PlaneArgs, div_ceil};
use crate::microkernel::ACT_NONE;

/// Whether a plane statement's volumes are streamed so on `X`: a depthwise window whose planes
/// [`columns`] streams.
pub(super) fn applies<X: ColumnGroups>(args: &PlaneArgs, kernel: usize, stride: usize, dilation: usize) -> bool {
    columns::applies::<X>(args, kernel, stride, dilation)
}

/// Every volume of `args` ([`PlaneArgs::depth`]), plane by plane: each pass over a whole plane
/// (a group of columns through every pass before the next group reads the input planes once per
/// group: on dw3d_k3_c32_16x56 1.54× the planar code's speed against 1.68× so), the passes before the last into one of two scratch
/// planes (one a pass reads, one it writes: in place, an overlapping column would read what the
/// one beside it wrote), the last into the output plane, which is then activated. (Two versions of
/// the stream, neither activated, the first pass's sums started at the bias and the others' from
/// memory: with a version for each activation of the last pass, the kernel took minutes to
/// compile.)
///
/// # Safety
/// As for [`super::portable_kernel`], with [`applies`] true, and the host runs `X`'s instructions.
#[inline(always)]
pub(super) unsafe fn volumes<X: ColumnGroups, const D: usize>(args: &PlaneArgs) {
    let ([h, w], [oh, ow]) = (args.input_size, args.output_size);
    let [depth_in, depth_out, taps, stride, dilation, front] = args.depth;
    // SAFETY: the caller's contract: each pass reads one input plane of a volume and writes one
    // output plane or a scratch plane, every scratch row it reads inside `scratch`.
    unsafe {
        let Some(stream) = Stream::<X>::new::<D>(args) else { return };
        // Two scratch planes, each with the rows around it that the stream reads
        // ([`columns::init_rows`]).
        let (before, after) = columns::init_rows(D);
        let rows = oh - before + after;
        let mut scratch = vec![0.0f32; 2 * (rows * ow) as usize];
        let base = scratch.as_mut_ptr();
        let scratch_plane = |n: usize| base.wrapping_offset((n as isize * rows - before) * ow);
        for p in 0..args.planes {
            let input = args.input.offset(args.group(p) * depth_in * h * w);
            let weight = args.weight.offset(p * taps * 9);
            let bias = if args.bias.is_null() { 0.0 } else { *args.bias.offset(p) };
            for z in 0..depth_out {
                let output = args.output.offset((p * depth_out + z) * oh * ow);
                // The depth taps whose input plane, `first + t·dilation`, is inside the volume.
                let first = z * stride - front;
                let inside = div_ceil(-first, dilation).max(0)..div_ceil(depth_in - first, dilation).min(taps);
                if inside.is_empty() {
                    // No input plane under the window: every output is the bias.
                    std::slice::from_raw_parts_mut(output, (oh * ow) as usize).fill(bias);
                }
                for (pass, t) in inside.clone().enumerate() {
                    let plane = Plane {
                        input: input.offset((first + t * dilation) * h * w),
                        weight: weight.offset(t * 9),
                        bias,
                        output: if t + 1 == inside.end { output } else { scratch_plane(pass % 2) },
                    };
                    if pass == 0 {
                        stream.plane::<D>(&plane, ACT_NONE);
                    } else {
                        stream.pass::<D>(&plane, scratch_plane((pass - 1) % 2));
                    }
                }
                if args.act != ACT_NONE {
                    activate_plane::<X>(output, oh * ow, args.act);
                }
            }
        }
    }
}

/// The `len` elements from `at` activated by `act` (an `ACT_*` code) in place.
///
/// # Safety
/// The host runs `X`'s instructions; the elements are readable and writable.
#[inline(always)]
unsafe fn activate_plane<X: Lanes>(at: *mut f32, len: isize, act: isize) {
    // SAFETY: the caller's contract; masked-off lanes touch no memory.
    unsafe {
        let mut i = 0;
        while i + X::L <= len {
            X::store(at.offset(i), X::activate(X::load(at.offset(i)), act));
            i += X::L;
        }
        if i < len {
            let mask = X::mask(0, len - i);
            X::store_masked(at.offset(i), X::activate(X::load_masked(at.offset(i), mask), act), mask);
        }
    }
}
