//! The IR interpreter: runs loop-IR functions and whole plans, checking every access.
//!
//! It exists so that lowering is tested against the reference interpreter independently of any code
//! generator, and so that a lowering bug shows up as an [`Error::OutOfBounds`] naming the function
//! and buffer rather than as memory corruption in generated code. Arithmetic matches what code
//! generators emit: `Fma` is a fused multiply-add (`f32::mul_add`); activations are computed in f64
//! from the f32 value and rounded once to f32 (as [`crate::spec::Activation::apply`] defines them).

use crate::error::Error;
use crate::ir::{Function, Plane, Stmt, TILE_LANES, TRANSPOSE, Tile, Value};
use crate::lower::{Arg, Plan};
use crate::params::Params;
use std::ops::DerefMut;

/// Packs a network's parameters for a plan (the params must already be validated).
pub fn pack_params(plan: &Plan, params: &Params) -> Vec<Vec<f32>> {
    pack_params_with(plan, params, |len| vec![0.0; len])
}

/// [`pack_params`] into buffers of the caller's choice: `zeroed(len)` makes each one, of `len`
/// elements (e.g. `conv_jit::AlignedBuffer::zeroed`, whose large buffers are on huge pages).
pub fn pack_params_with<B: DerefMut<Target = [f32]>>(
    plan: &Plan,
    params: &Params,
    zeroed: impl Fn(usize) -> B,
) -> Vec<B> {
    plan.params
        .iter()
        .map(|param| {
            let tensor = params.get(&param.source).expect("params were validated against the network");
            let mut buffer = zeroed(param.len as usize);
            param.packing.pack_into(tensor.data(), &mut buffer);
            buffer
        })
        .collect()
}

/// Runs a plan: `input` in the user's layout, parameters packed by [`pack_params`]. Returns the
/// output in the user's layout.
pub fn run_plan(plan: &Plan, input: &[f32], packed: &[Vec<f32>]) -> Result<Vec<f32>, Error> {
    let mismatch =
        |what: String, found: usize, expected: u64| Error::PlanArgument { what, found: found as u64, expected };
    if input.len() as u64 != plan.input_len {
        return Err(mismatch("the input".to_string(), input.len(), plan.input_len));
    }
    if packed.len() != plan.params.len() {
        return Err(mismatch("the list of packed parameters".to_string(), packed.len(), plan.params.len() as u64));
    }
    for (param, buffer) in plan.params.iter().zip(packed) {
        if buffer.len() as u64 != param.len {
            return Err(mismatch(format!("packed parameter `{}`", param.source), buffer.len(), param.len));
        }
    }
    let mut values: Vec<Vec<f32>> = plan.values.iter().map(|&len| vec![0.0; len as usize]).collect();
    let mut input_buffer = input.to_vec();
    let mut output = vec![0.0f32; plan.output_len as usize];
    let mut params: Vec<Vec<f32>> = packed.to_vec();
    for step in &plan.steps {
        // Move each argument's buffer into the call and back afterwards; an argument passed twice
        // (`add r(a, a)`) is read-only and passed as a copy.
        let mut buffers: Vec<Vec<f32>> = Vec::with_capacity(step.args.len());
        for (position, arg) in step.args.iter().enumerate() {
            if let Some(first) = step.args[..position].iter().position(|earlier| earlier == arg) {
                buffers.push(buffers[first].clone());
                continue;
            }
            buffers.push(match *arg {
                Arg::Input => std::mem::take(&mut input_buffer),
                Arg::Output => std::mem::take(&mut output),
                Arg::Value(index) => std::mem::take(&mut values[index]),
                Arg::Param(index) => std::mem::take(&mut params[index]),
            });
        }
        // A part of a stage sees a window of its output buffer.
        let mut whole = None;
        if let Some(part) = step.part {
            let len = step.function.buffers.get(part.window).map_or(0, |buffer| buffer.len);
            let end = part.start + len;
            let found = buffers.get(part.window).map_or(0, |buffer| buffer.len() as u64);
            if let Some(runs) = part.runs.filter(|runs| !runs.fit(len)) {
                return Err(Error::PlanArgument {
                    what: format!(
                        "the runs of step `{}`'s window ({} of {} elements, {} apart; at least one, none longer \
                         than that distance)",
                        step.layer, runs.count, runs.len, runs.stride
                    ),
                    found: runs.span(),
                    expected: len,
                });
            }
            let Some(buffer) = buffers.get_mut(part.window).filter(|_| end <= found) else {
                return Err(Error::PlanArgument {
                    what: format!("the buffer of which step `{}` writes elements {}..{end}", step.layer, part.start),
                    found,
                    expected: end,
                });
            };
            let range = part.start as usize..(part.start + len) as usize;
            let full = std::mem::replace(buffer, buffer[range.clone()].to_vec());
            whole = Some((range, full));
        }
        let result = run_function(&step.function, &mut buffers);
        if let (Some(part), Some((range, mut full))) = (step.part, whole) {
            // Only what the part may write is kept: a write elsewhere shows up as a wrong result.
            let window = &buffers[part.window];
            match part.runs {
                None => full[range].copy_from_slice(window),
                Some(runs) => {
                    for run in 0..runs.count {
                        let at = (run * runs.stride) as usize..(run * runs.stride + runs.len) as usize;
                        full[range.start + at.start..range.start + at.end].copy_from_slice(&window[at]);
                    }
                }
            }
            buffers[part.window] = full;
        }
        for (position, (arg, buffer)) in step.args.iter().zip(buffers).enumerate() {
            if step.args[..position].contains(arg) {
                continue;
            }
            match *arg {
                Arg::Input => input_buffer = buffer,
                Arg::Output => output = buffer,
                Arg::Value(index) => values[index] = buffer,
                Arg::Param(index) => params[index] = buffer,
            }
        }
        result?;
    }
    Ok(output)
}

/// Runs one function on `buffers` (one per parameter, in order).
pub fn run_function(function: &Function, buffers: &mut [Vec<f32>]) -> Result<(), Error> {
    for (declared, given) in function.buffers.iter().zip(buffers.iter()) {
        if given.len() as u64 != declared.len {
            return Err(Error::OutOfBounds {
                function: function.name.clone(),
                buffer: declared.name.clone(),
                index: 0,
                end: declared.len as i64,
                len: given.len() as u64,
            });
        }
    }
    let lanes = function.lanes as usize;
    let mut state = State {
        function,
        vars: vec![0; function.loop_vars as usize],
        accumulators: vec![[0.0; MAX_LANES]; function.accumulators as usize],
        lanes,
    };
    state.block(&function.body, buffers)
}

struct State<'a> {
    function: &'a Function,
    vars: Vec<i64>,
    accumulators: Vec<Vector>,
    lanes: usize,
}

/// The widest vector the IR uses; lanes past `Function::lanes` are ignored.
const MAX_LANES: usize = 8;

type Vector = [f32; MAX_LANES];

impl State<'_> {
    fn block(&mut self, body: &[Stmt], buffers: &mut [Vec<f32>]) -> Result<(), Error> {
        for stmt in body {
            match stmt {
                Stmt::Loop { var, count, body } => {
                    for value in 0..*count {
                        self.vars[var.0 as usize] = value as i64;
                        self.block(body, buffers)?;
                    }
                }
                Stmt::Init { acc, value } => {
                    let value = self.value(value, buffers)?;
                    self.accumulators[acc.0 as usize] = value;
                }
                Stmt::Fma { acc, a, b } => {
                    let (a, b) = (self.value(a, buffers)?, self.value(b, buffers)?);
                    for ((sum, a), b) in self.accumulators[acc.0 as usize].iter_mut().zip(a).zip(b).take(self.lanes) {
                        *sum = a.mul_add(b, *sum);
                    }
                }
                Stmt::Store { buffer, index, value } => {
                    let value = self.value(value, buffers)?;
                    let start = self.range(buffer.0 as usize, index.eval(&self.vars), self.lanes)?;
                    buffers[buffer.0 as usize][start..start + self.lanes].copy_from_slice(&value[..self.lanes]);
                }
                Stmt::Tile(tile) => self.tile(tile, buffers)?,
                Stmt::Plane(plane) => self.plane(plane, buffers)?,
                Stmt::Transpose { from, from_index, from_stride, to, to_index, to_stride } => {
                    let size = TRANSPOSE as usize;
                    let (from_base, to_base) = (from_index.eval(&self.vars), to_index.eval(&self.vars));
                    let mut block = [[0.0f32; TRANSPOSE as usize]; TRANSPOSE as usize];
                    for (r, row) in block.iter_mut().enumerate() {
                        let start = self.range(from.0 as usize, from_base + r as i64 * from_stride, size)?;
                        row.copy_from_slice(&buffers[from.0 as usize][start..start + size]);
                    }
                    for c in 0..size {
                        let start = self.range(to.0 as usize, to_base + c as i64 * to_stride, size)?;
                        for (r, row) in block.iter().enumerate() {
                            buffers[to.0 as usize][start + r] = row[c];
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// [`Stmt::Tile`], element by element in the order its definition gives.
    fn tile(&self, tile: &Tile, buffers: &mut [Vec<f32>]) -> Result<(), Error> {
        let (input, weight, acc) = (tile.input.0 as usize, tile.weight.0 as usize, tile.acc.0 as usize);
        let (input_base, weight_base) = (tile.input_index.eval(&self.vars), tile.weight_index.eval(&self.vars));
        let acc_base = tile.acc_index.eval(&self.vars);
        let lanes = i64::from(TILE_LANES);
        let [taps_d, taps_h, taps_w] = tile.taps;
        let (input_strides, weight_strides) = (tile.tap_input_strides, tile.tap_weight_strides);
        for strip_pixel in 0..tile.repeat as i64 * i64::from(tile.pixels) {
            let (r, pixel) = (strip_pixel / i64::from(tile.pixels), strip_pixel % i64::from(tile.pixels));
            for vector in 0..i64::from(tile.vectors) {
                for lane in 0..lanes {
                    let at =
                        acc_base + r * tile.acc_repeat_stride + pixel * tile.acc_pixel_stride + vector * lanes + lane;
                    let slot = self.range(acc, at, 1)?;
                    let mut sum = match &tile.bias {
                        Some((bias, index)) => {
                            let at = index.eval(&self.vars) + r * tile.repeat_bias_stride + vector * lanes + lane;
                            let at = self.range(bias.0 as usize, at, 1)?;
                            buffers[bias.0 as usize][at]
                        }
                        None => 0.0,
                    };
                    for k in 0..tile.reduce as i64 {
                        for (td, th, tw) in (0..taps_d as i64).flat_map(|td| {
                            (0..taps_h as i64).flat_map(move |th| (0..taps_w as i64).map(move |tw| (td, th, tw)))
                        }) {
                            let lane_of_input = if tile.depthwise { vector * lanes + lane } else { 0 };
                            let x = input_base
                                + lane_of_input
                                + r * tile.repeat_input_stride
                                + pixel * tile.pixel_stride
                                + k * tile.reduce_input_stride
                                + td * input_strides[0]
                                + th * input_strides[1]
                                + tw * input_strides[2];
                            let y = weight_base
                                + r * tile.repeat_weight_stride
                                + k * tile.reduce_weight_stride
                                + td * weight_strides[0]
                                + th * weight_strides[1]
                                + tw * weight_strides[2]
                                + vector * lanes
                                + lane;
                            let (x, y) = (self.range(input, x, 1)?, self.range(weight, y, 1)?);
                            sum = buffers[input][x].mul_add(buffers[weight][y], sum);
                        }
                    }
                    // As `Value::Activate` applies it.
                    buffers[acc][slot] = tile.act.activation().apply(f64::from(sum)) as f32;
                }
            }
        }
        Ok(())
    }

    /// [`Stmt::Plane`], element by element in the order its definition gives.
    fn plane(&self, plane: &Plane, buffers: &mut [Vec<f32>]) -> Result<(), Error> {
        let (input, weight, output) = (plane.input.0 as usize, plane.weight.0 as usize, plane.output.0 as usize);
        let (input_base, weight_base) = (plane.input_index.eval(&self.vars), plane.weight_index.eval(&self.vars));
        let output_base = plane.output_index.eval(&self.vars);
        let [h, w] = plane.input_size.map(|size| size as i64);
        let [oh, ow] = plane.output_size.map(|size| size as i64);
        let (kernel, stride, dilation) = (plane.kernel as i64, plane.stride as i64, plane.dilation as i64);
        let [pad_top, pad_left] = plane.padding.map(|pad| pad as i64);
        let (group_inputs, group_outputs) = (plane.group_inputs as i64, plane.group_outputs.max(1) as i64);
        let [id_count, od_count, kd_count, stride_d, dilation_d, pad_front] = plane.depth.values().map(|n| n as i64);
        let volumes = (0..plane.planes as i64).flat_map(|p| (0..od_count).map(move |z| (p, z)));
        for (p, z) in volumes {
            let first_input = input_base + p / group_outputs * group_inputs * id_count * h * w;
            for (y, x) in (0..oh).flat_map(|y| (0..ow).map(move |x| (y, x))) {
                let mut sum = match &plane.bias {
                    Some((bias, index)) => {
                        let at = self.range(bias.0 as usize, index.eval(&self.vars) + p, 1)?;
                        buffers[bias.0 as usize][at]
                    }
                    None => 0.0,
                };
                let taps = (0..kd_count)
                    .flat_map(|kd| (0..kernel).flat_map(move |kh| (0..kernel).map(move |kw| (kd, kh, kw))));
                for (k, (kd, kh, kw)) in (0..group_inputs).flat_map(|k| taps.clone().map(move |tap| (k, tap))) {
                    let iz = z * stride_d - pad_front + kd * dilation_d;
                    let (ih, iw) = (y * stride - pad_top + kh * dilation, x * stride - pad_left + kw * dilation);
                    if !(0..id_count).contains(&iz) || !(0..h).contains(&ih) || !(0..w).contains(&iw) {
                        continue;
                    }
                    let at = self.range(input, first_input + ((k * id_count + iz) * h + ih) * w + iw, 1)?;
                    let window = ((p * group_inputs + k) * kd_count + kd) * kernel * kernel;
                    let tap = self.range(weight, weight_base + window + kh * kernel + kw, 1)?;
                    sum = buffers[input][at].mul_add(buffers[weight][tap], sum);
                }
                let at = self.range(output, output_base + ((p * od_count + z) * oh + y) * ow + x, 1)?;
                // As `Value::Activate` applies it.
                buffers[output][at] = plane.act.activation().apply(f64::from(sum)) as f32;
            }
        }
        Ok(())
    }

    /// Checks `[index, index + width)` against the buffer's declared length and its real one.
    fn range(&self, buffer: usize, index: i64, width: usize) -> Result<usize, Error> {
        let declared = &self.function.buffers[buffer];
        let end = index + width as i64;
        if index < 0 || end as u64 > declared.len {
            return Err(Error::OutOfBounds {
                function: self.function.name.clone(),
                buffer: declared.name.clone(),
                index,
                end,
                len: declared.len,
            });
        }
        Ok(index as usize)
    }

    fn value(&self, value: &Value, buffers: &[Vec<f32>]) -> Result<Vector, Error> {
        let mut vector = [0.0; MAX_LANES];
        match value {
            Value::Acc(acc) => vector = self.accumulators[acc.0 as usize],
            Value::Load { buffer, index } => {
                let start = self.range(buffer.0 as usize, index.eval(&self.vars), self.lanes)?;
                vector[..self.lanes].copy_from_slice(&buffers[buffer.0 as usize][start..start + self.lanes]);
            }
            Value::LoadEven { buffer, index } => {
                let span = 2 * self.lanes - 1;
                let start = self.range(buffer.0 as usize, index.eval(&self.vars), span)?;
                for (lane, x) in vector[..self.lanes].iter_mut().enumerate() {
                    *x = buffers[buffer.0 as usize][start + 2 * lane];
                }
            }
            Value::Splat { buffer, index } => {
                let start = self.range(buffer.0 as usize, index.eval(&self.vars), 1)?;
                vector = [buffers[buffer.0 as usize][start]; MAX_LANES];
            }
            Value::Zero => {}
            Value::Add(a, b) => {
                let (a, b) = (self.value(a, buffers)?, self.value(b, buffers)?);
                for ((sum, a), b) in vector.iter_mut().zip(a).zip(b) {
                    *sum = a + b;
                }
            }
            Value::Sub(a, b) => {
                let (a, b) = (self.value(a, buffers)?, self.value(b, buffers)?);
                for ((difference, a), b) in vector.iter_mut().zip(a).zip(b) {
                    *difference = a - b;
                }
            }
            Value::Activate(act, inner) => {
                vector = self.value(inner, buffers)?;
                for x in &mut vector[..self.lanes] {
                    *x = act.apply(f64::from(*x)) as f32;
                }
            }
        }
        Ok(vector)
    }
}
