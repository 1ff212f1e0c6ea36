//! Buffer sharing: internal values whose lifetimes do not overlap share one buffer.
//!
//! Lowering gives every internal value (a layer's output, a scratch buffer) its own buffer; a
//! network's values together are many times the largest of them (MobileNetV1 at 224×224: ~15 MB
//! of activations beside 17 MB of weights), so each layer would write to memory that the last run
//! left far out of cache. Like the memory planners of other engines, [`share`] then assigns the
//! values to as few buffers as their lifetimes allow: a value is live from the first step that
//! takes it to the last (the parts of a split stage, which run at once, as one step), and a buffer
//! holds one live value at a time. Every element a step reads was written earlier in the same run
//! (padded channels aside, which no real channel reads), so a buffer's earlier contents never
//! reach a result: the plan computes the same values, bit for bit, in less memory. A function
//! taking a shared buffer declares the buffer's length (its bounds were proved for its value's
//! elements, a prefix of it); a part's window of a buffer stays a window.

use super::{Arg, Plan};

/// Reassigns `plan`'s values to shared buffers (see the module's documentation): values in order
/// of first use, each to the free buffer (its last value no longer live) of the least length that
/// holds it, else to the longest free buffer (lengthened), else to a new buffer. Values no step
/// takes are dropped.
pub(super) fn share(plan: &mut Plan) {
    // The time of each step: the parts of one stage share their first part's.
    let mut times = Vec::with_capacity(plan.steps.len());
    for step in &plan.steps {
        let continues = step.part.is_some_and(|part| part.index > 0);
        let time = match times.last() {
            Some(&last) if continues => last,
            Some(&last) => last + 1,
            None => 0,
        };
        times.push(time);
    }
    // Each value's live range: the first and last time a step takes it.
    let mut live: Vec<Option<(usize, usize)>> = vec![None; plan.values.len()];
    for (step, &time) in plan.steps.iter().zip(&times) {
        for &arg in &step.args {
            if let Arg::Value(value) = arg {
                let range = &mut live[value];
                *range = Some(range.map_or((time, time), |(first, last)| (first.min(time), last.max(time))));
            }
        }
    }
    let mut order: Vec<(usize, (usize, usize))> =
        live.iter().enumerate().filter_map(|(value, range)| range.map(|range| (value, range))).collect();
    order.sort_by_key(|&(value, (first, _))| (first, value));

    // Per buffer: its length and the last time its current value is live.
    let mut buffers: Vec<(u64, usize)> = Vec::new();
    let mut buffer_of = vec![None; plan.values.len()];
    for (value, (first, last)) in order {
        let len = plan.values[value];
        // Buffers whose value is no longer live when this one is first taken, as (index, length).
        let free = || {
            buffers
                .iter()
                .enumerate()
                .filter(|&(_, &(_, busy))| busy < first)
                .map(|(buffer, &(length, _))| (buffer, length))
        };
        let fitting = free().filter(|&(_, length)| length >= len).min_by_key(|&(_, length)| length);
        let chosen = fitting.or_else(|| free().max_by_key(|&(_, length)| length)).map(|(buffer, _)| buffer);
        let buffer = chosen.unwrap_or_else(|| {
            buffers.push((0, 0));
            buffers.len() - 1
        });
        buffers[buffer] = (buffers[buffer].0.max(len), last);
        buffer_of[value] = Some(buffer);
    }
    // Each step takes its buffers whole, as it took its values (a part's window stays the
    // window): a function declares the buffer's length, of which it uses its value's elements.
    for step in &mut plan.steps {
        let window = step.part.map(|part| part.window);
        for (position, arg) in step.args.iter_mut().enumerate() {
            if let Arg::Value(value) = arg {
                *value = buffer_of[*value].expect("every value a step takes has a live range");
                if window != Some(position) {
                    step.function.buffers[position].len = buffers[*value].0;
                }
            }
        }
    }
    plan.values = buffers.into_iter().map(|(len, _)| len).collect();
}
