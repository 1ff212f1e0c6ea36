//! A compiled model: the API for running a network on a backend, with shapes known only at run
//! time.
//!
//! ```
//! use convgen::{Backend, CompiledModel, Params, compile_source};
//!
//! let network = compile_source("m.conv", "
//!     input x: [N, 8, H, W];
//!     depthwise dw(x) { kernel: 3, pad: 1, act: relu6 }
//!     pointwise pw(dw) { out: 16 }
//! ").unwrap();
//! let model = CompiledModel::new(network, Backend::Jit);
//! let params = model.pack(&Params::random(model.network(), 1)).unwrap(); // once
//! let input = vec![0.5f32; 2 * 8 * 10 * 12];
//! let mut output = vec![0.0f32; 2 * 16 * 10 * 12];
//! // The first call for a shape compiles it; later calls hit the cache.
//! model.run((&[2, 8, 10, 12][..], &input[..]), &params, (&[2, 16, 10, 12][..], &mut output[..])).unwrap();
//! assert!(output.iter().all(|value| value.is_finite()));
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use conv_dsl::dim::fmt_shape;
use conv_dsl::lower::{PackedParam, Plan};
use conv_dsl::schedule::{Fusion, Schedule, Target};
use conv_dsl::{Network, Params};

use crate::Error;

/// Which code runs the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// The reference interpreter (the oracle; slow).
    Interpreter,
    /// Machine code from Cranelift, compiled per concrete input shape and cached.
    Jit,
}

/// How many concrete input shapes a model keeps compiled; the least recently used is dropped (and
/// its machine code freed once no run still uses it).
pub const SHAPE_CACHE_CAPACITY: usize = 16;

/// A network ready to run on one backend: `Send + Sync`, so one model can serve many threads.
pub struct CompiledModel {
    network: Network,
    backend: Backend,
    target: Target,
    schedules: HashMap<String, Schedule>,
    /// Compiled code per concrete input shape (in the input's layout order), most recent last.
    cache: Mutex<Vec<(Vec<u64>, Arc<Executable>)>>,
}

/// What the cache holds for one concrete shape.
struct Executable {
    plan: Plan,
    code: conv_jit::CompiledPlan,
    /// The output shape for this input shape, in the input's layout.
    output_shape: Vec<u64>,
    /// How the plan packs its parameters (the key of `PackedParams`), computed once here rather
    /// than on every run.
    packing: Vec<PackedParamKey>,
}

/// Parameters checked against a model and packed for its kernels.
pub struct PackedParams {
    params: Params,
    /// Packed buffers by packing signature; every shape of a model has the same signature (packing
    /// depends on channels, groups and vector width, never on spatial sizes), so this packs once.
    packed: Mutex<HashMap<Vec<PackedParamKey>, Arc<PackedBuffers>>>,
}

/// One packed parameter's identity: source tensor, packed length, packing.
type PackedParamKey = (String, u64, String);

/// The packed buffers of a plan, in `Plan::params` order.
type PackedBuffers = Vec<conv_jit::AlignedBuffer>;

/// A tensor argument: shape and C-order data.
pub type TensorRef<'a> = (&'a [usize], &'a [f32]);

/// A tensor to write: shape and C-order data.
pub type TensorMut<'a> = (&'a [usize], &'a mut [f32]);

impl CompiledModel {
    /// A model on `backend` with automatic schedules for Cranelift on x86-64 / aarch64 (4 lanes,
    /// and the tile microkernels where the host has AVX2 and FMA: [`conv_jit::host_target`]).
    pub fn new(network: Network, backend: Backend) -> Self {
        CompiledModel {
            network,
            backend,
            target: conv_jit::host_target(),
            schedules: HashMap::new(),
            cache: Mutex::new(Vec::new()),
        }
    }

    /// Uses `schedule` for the stage named `layer` (`dw1`, or `s.pw` for a separable half) instead
    /// of [`Schedule::auto`]. A schedule never changes results, but for rounding with
    /// `kernel=winograd` (the default for dense 3×3 stride-1 layers of at least 16 inputs per group
    /// where the CPU has AVX2 and FMA; a `kernel=tile` schedule computes such a layer directly).
    pub fn with_schedule(mut self, layer: &str, schedule: Schedule) -> Result<Self, Error> {
        let known = self.network.layers.iter().any(|candidate| {
            candidate.op.stages().iter().any(|(suffix, _)| format!("{}{suffix}", candidate.name) == layer)
        });
        if !known {
            return Err(conv_dsl::Error::Schedule {
                layer: layer.to_string(),
                reason: "the model has no convolution stage of this name".to_string(),
            }
            .into());
        }
        self.schedules.insert(layer.to_string(), schedule);
        self.cache.lock().unwrap_or_else(PoisonError::into_inner).clear();
        Ok(self)
    }

    /// Runs on up to `threads` threads (at least 1; 1 by default): every convolution stage with
    /// at least [`Target::PART_MACS`] multiply-adds per thread is split into `threads` parts, each
    /// computing a window of the stage's output, which a run computes at the same time on rayon's
    /// global pool. Results do not change: every output element sums the same terms in the same
    /// order.
    pub fn with_threads(mut self, threads: u32) -> Self {
        self.target.threads = threads.max(1);
        self.cache.lock().unwrap_or_else(PoisonError::into_inner).clear();
        self
    }

    /// Whether a depthwise layer read only by a pointwise one is computed inside it, on blocks of
    /// rows that stay in cache (`true`, the default), or each layer on its own (`false`: to
    /// measure the difference, or to inspect each layer's code). Results do not change.
    pub fn with_fusion(mut self, fusion: bool) -> Self {
        self.target.fusion = if fusion { Fusion::DEFAULT } else { Fusion::OFF };
        self.cache.lock().unwrap_or_else(PoisonError::into_inner).clear();
        self
    }

    /// The network.
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Checks `params` against the network (names and shapes) and prepares them for packing.
    pub fn pack(&self, params: &Params) -> Result<PackedParams, Error> {
        params.validate(&self.network)?;
        Ok(PackedParams { params: params.clone(), packed: Mutex::new(HashMap::new()) })
    }

    /// Runs the model: `input` shaped as the model's input (in its layout), `output` shaped as the
    /// output for that input. Every length and shape is checked before any generated code runs.
    pub fn run(&self, input: TensorRef, params: &PackedParams, output: TensorMut) -> Result<(), Error> {
        self.run_with(input, params, output, None)
    }

    /// [`CompiledModel::run`], timing each step of the generated code: in order, the layer (or
    /// layout conversion, `….to_internal` / `….to_user`) each step computes and how long it took.
    /// The interpreter has no steps: its whole run is one entry, `interpreter`.
    pub fn run_timed(
        &self,
        input: TensorRef,
        params: &PackedParams,
        output: TensorMut,
    ) -> Result<Vec<(String, std::time::Duration)>, Error> {
        let mut times = Vec::new();
        self.run_with(input, params, output, Some(&mut times))?;
        Ok(times)
    }

    fn run_with(
        &self,
        input: TensorRef,
        params: &PackedParams,
        output: TensorMut,
        times: Option<&mut Vec<(String, std::time::Duration)>>,
    ) -> Result<(), Error> {
        let (input_shape, input_data) = input;
        let (output_shape, output_data) = output;
        check_length("input", input_shape, input_data.len())?;
        check_length("output", output_shape, output_data.len())?;
        let shape: Vec<u64> = input_shape.iter().map(|&dim| dim as u64).collect();
        let check_output = |expected: &[u64]| -> Result<(), Error> {
            if output_shape.iter().map(|&dim| dim as u64).ne(expected.iter().copied()) {
                return Err(Error::Shape(format!(
                    "the output buffer has shape {}; for input shape {} the model's output is {}",
                    fmt_shape(output_shape),
                    fmt_shape(input_shape),
                    fmt_shape(expected)
                )));
            }
            Ok(())
        };
        match self.backend {
            Backend::Interpreter => {
                let binding = conv_dsl::bind(&self.network, &shape)?;
                check_output(&self.network.input.layout.order(&binding.layers[self.network.output].shape))?;
                let started = std::time::Instant::now();
                let input = conv_dsl::Tensor::new(input_shape.to_vec(), input_data.to_vec())?;
                let result = conv_dsl::interp::run(&self.network, &input, &params.params)?;
                output_data.copy_from_slice(result.data());
                if let Some(times) = times {
                    times.push(("interpreter".to_string(), started.elapsed()));
                }
            }
            Backend::Jit => {
                // A cached shape was bound and checked when it was compiled.
                let executable = match self.cached(&shape) {
                    Some(executable) => {
                        check_output(&executable.output_shape)?;
                        executable
                    }
                    None => {
                        // Every check before compiling: nothing is compiled for a rejected call.
                        let binding = conv_dsl::bind(&self.network, &shape)?;
                        check_output(&self.network.input.layout.order(&binding.layers[self.network.output].shape))?;
                        self.compile(&shape, &binding)?
                    }
                };
                let packed = params.packed_for(&executable.plan, &executable.packing);
                let code = &executable.code;
                let jit = |error: conv_jit::Error| Error::Jit(error.to_string());
                match times {
                    Some(times) => *times = code.run_into_timed(input_data, &packed, output_data).map_err(jit)?,
                    None => code.run_into(input_data, &packed, output_data).map_err(jit)?,
                }
            }
        }
        Ok(())
    }

    /// [`CompiledModel::run`] on `ndarray` views (feature `ndarray`). Both must be in standard (C,
    /// contiguous) layout; a view that is not is an error, not a silent copy.
    #[cfg(feature = "ndarray")]
    pub fn run_ndarray(
        &self,
        input: ndarray::ArrayViewD<f32>,
        params: &PackedParams,
        mut output: ndarray::ArrayViewMutD<f32>,
    ) -> Result<(), Error> {
        let not_contiguous = |what: &str| {
            Error::Shape(format!(
                "the {what} view is not in standard (C, contiguous) layout; use `.as_standard_layout()`"
            ))
        };
        let input_shape = input.shape().to_vec();
        let output_shape = output.shape().to_vec();
        let input_data = input.as_slice().ok_or_else(|| not_contiguous("input"))?;
        let output_data = output.as_slice_mut().ok_or_else(|| not_contiguous("output"))?;
        self.run((&input_shape, input_data), params, (&output_shape, output_data))
    }

    /// The lowered plan for one concrete input shape (what `inspect --emit ir` shows).
    pub fn plan(&self, shape: &[u64]) -> Result<Plan, Error> {
        let binding = conv_dsl::bind(&self.network, shape)?;
        self.lower(&binding)
    }

    fn lower(&self, binding: &conv_dsl::Binding) -> Result<Plan, Error> {
        Ok(conv_dsl::lower::lower(&self.network, binding, self.target, &|name| self.schedules.get(name).copied())?)
    }

    /// Lowers and compiles `shape` (bound to `binding`), and caches the result. Compilation happens outside the
    /// lock; two threads racing on a new shape may both compile it, and one result is kept.
    fn compile(&self, shape: &[u64], binding: &conv_dsl::Binding) -> Result<Arc<Executable>, Error> {
        let output_shape = self.network.input.layout.order(&binding.layers[self.network.output].shape);
        let plan = self.lower(binding)?;
        let code = conv_jit::compile(&plan).map_err(|error| Error::Jit(error.to_string()))?;
        let packing = plan.params.iter().map(signature).collect();
        let executable = Arc::new(Executable { plan, code, output_shape, packing });
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(position) = cache.iter().position(|(key, _)| key == shape) {
            return Ok(cache[position].1.clone());
        }
        if cache.len() >= SHAPE_CACHE_CAPACITY {
            cache.remove(0); // its code is freed when the last run using it finishes
        }
        cache.push((shape.to_vec(), executable.clone()));
        Ok(executable)
    }

    /// A cache lookup, marking the entry most recently used.
    fn cached(&self, shape: &[u64]) -> Option<Arc<Executable>> {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let position = cache.iter().position(|(key, _)| key == shape)?;
        let entry = cache.remove(position);
        let executable = entry.1.clone();
        cache.push(entry);
        Some(executable)
    }

    /// How many shapes are compiled and cached.
    pub fn cached_shapes(&self) -> usize {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Per step of the code compiled for `shape` (if it is cached): the layer and its compile time.
    pub fn compile_times(&self, shape: &[u64]) -> Option<Vec<(String, std::time::Duration)>> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let (_, executable) = cache.iter().find(|(key, _)| key == shape)?;
        Some(executable.code.compile_times().to_vec())
    }

    /// Compiles the code for `shape` now if it is not cached (for benchmarks and warm-up).
    pub fn prepare(&self, shape: &[u64]) -> Result<(), Error> {
        match self.backend {
            Backend::Jit if self.cached(shape).is_some() => {}
            Backend::Jit => {
                self.compile(shape, &conv_dsl::bind(&self.network, shape)?)?;
            }
            Backend::Interpreter => {
                conv_dsl::bind(&self.network, shape)?;
            }
        }
        Ok(())
    }
}

impl PackedParams {
    /// The packed buffers for `plan` (whose packing signature is `key`), packed on first use.
    fn packed_for(&self, plan: &Plan, key: &[PackedParamKey]) -> Arc<PackedBuffers> {
        let mut packed = self.packed.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(existing) = packed.get(key) {
            return existing.clone();
        }
        // In buffers of the JIT's (large ones on huge pages), packed in place.
        let buffers =
            Arc::new(conv_dsl::ir_interp::pack_params_with(plan, &self.params, conv_jit::AlignedBuffer::zeroed));
        packed.insert(key.to_vec(), buffers.clone());
        buffers
    }
}

fn signature(param: &PackedParam) -> PackedParamKey {
    (param.source.clone(), param.len, format!("{:?}", param.packing))
}

fn check_length(what: &str, shape: &[usize], len: usize) -> Result<(), Error> {
    let expected = shape.iter().try_fold(1usize, |product, &dim| product.checked_mul(dim));
    if expected != Some(len) {
        return Err(Error::Shape(format!(
            "the {what} buffer has {len} values, but its shape {} needs {}",
            fmt_shape(shape),
            expected.map_or("more than usize::MAX".to_string(), |count| count.to_string())
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn compiled_model_is_send_and_sync() {
        assert_send_sync::<CompiledModel>();
        assert_send_sync::<PackedParams>();
    }
}
