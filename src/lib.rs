//! convgen: a convolution-kernel compiler for grouped, depthwise, pointwise and separable
//! convolutions.
//!
//! This facade crate is what users depend on. It re-exports the front end ([`conv_dsl`]: the DSL,
//! its checker, the checked [`Network`], the reference interpreter and the cost model) and adds file
//! I/O: models from `.conv` files, tensors from `.npy`, parameters from `.safetensors`.
//!
//! ```
//! use convgen::{Params, Tensor, compile_source, interp};
//!
//! let network = compile_source("sep.conv", "
//!     input x: [1, 16, 10, 10];
//!     separable s(x) { out: 32, kernel: 3, pad: same, act: relu6 }
//! ").unwrap();
//! // PyTorch's names and layouts: s.dw.weight [16, 1, 3, 3], s.pw.weight [32, 16, 1, 1], …
//! let params = Params::random(&network, 1);
//! assert_eq!(params.get("s.pw.weight").unwrap().shape(), &[32, 16, 1, 1]);
//! let input = Tensor::new(vec![1, 16, 10, 10], vec![1.0; 1600]).unwrap();
//! let output = interp::run(&network, &input, &params).unwrap();
//! assert_eq!(output.shape(), &[1, 32, 10, 10]);
//! let cost = convgen::cost_report(&network);
//! assert!(cost.rows[0].saving().unwrap() > 7.0); // depthwise-separable 3x3: ~1/(1/32 + 1/9)
//! ```
#![deny(missing_docs)]

pub mod explain;
pub mod io;
pub mod macro_support;
pub mod model;

pub use conv_dsl;
pub use conv_dsl::emit_rust::PlanFor;
pub use conv_dsl::{
    Activation, Binding, Conv, ConvKind, CostReport, Dim, Layer, Layout, Network, Op, Padding, Params, Source, Tensor,
    bind, compile_source, cost_report, interp,
};
pub use conv_macros::{conv, conv_file};
pub use io::{load_model, read_npy, read_safetensors, write_npy, write_safetensors};
pub use model::{Backend, CompiledModel, PackedParams};

use std::path::PathBuf;

/// Everything that can go wrong in convgen's facade: the front end's errors and file errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A problem in the model, the shapes or the tensors.
    #[error(transparent)]
    Model(#[from] conv_dsl::Error),
    /// A buffer passed to [`CompiledModel::run`] does not fit its shape or the model.
    #[error("{0}")]
    Shape(String),
    /// The JIT failed to compile or run a plan.
    #[error("jit: {0}")]
    Jit(String),
    /// A file could not be read or written.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong, in one line.
        message: String,
    },
}

impl Error {
    pub(crate) fn file(path: &std::path::Path, message: impl Into<String>) -> Self {
        Error::File { path: path.to_path_buf(), message: message.into() }
    }
}
