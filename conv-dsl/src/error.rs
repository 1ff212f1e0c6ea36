//! The crate's one error type.

use crate::diagnostic::LocatedDiagnostic;

/// Everything that can go wrong in convgen's front end and reference interpreter.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Error {
    /// The model text has problems; `rendered` shows them all against the source.
    #[error("{rendered}")]
    Model {
        /// Every problem, in source order.
        diagnostics: Vec<LocatedDiagnostic>,
        /// The problems rendered with source lines and carets.
        rendered: String,
    },
    /// The input tensor does not fit the model's input declaration.
    #[error("input `{name}` has shape {found}; the model expects {expected}{detail}")]
    InputShape {
        /// The input's name in the model.
        name: String,
        /// The declared shape (symbolic dims by name), in the input's layout.
        expected: String,
        /// The shape given.
        found: String,
        /// Which dim is wrong, and why.
        detail: String,
    },
    /// With the concrete input, a layer's padded input is smaller than its effective kernel.
    #[error(
        "layer `{layer}` has an empty output for input shape {input}: on spatial axis {axis} the padded input is {padded}, smaller than the effective kernel {effective_kernel}"
    )]
    EmptyOutput {
        /// The layer (or separable stage).
        layer: String,
        /// The concrete input shape of the network.
        input: String,
        /// Spatial axis (0-based).
        axis: usize,
        /// Input plus padding.
        padded: u64,
        /// `dilation·(kernel − 1) + 1`.
        effective_kernel: u64,
    },
    /// With the concrete input, a tensor would exceed the element limit.
    #[error(
        "{what} would have shape {shape} ({elements} elements); the limit is 2147483648 (2^31) elements per tensor"
    )]
    TooLarge {
        /// Which tensor.
        what: String,
        /// Its shape.
        shape: String,
        /// Its element count (saturated).
        elements: u128,
    },
    /// With the concrete input, the operands of an `add` differ in shape.
    #[error("layer `{layer}` adds `{left}` {left_shape} and `{right}` {right_shape}, which differ in shape")]
    AddShapes {
        /// The `add` layer.
        layer: String,
        /// First operand.
        left: String,
        /// Its shape.
        left_shape: String,
        /// Second operand.
        right: String,
        /// Its shape.
        right_shape: String,
    },
    /// A parameter tensor the model needs is absent.
    #[error("parameter `{name}` is missing (the model expects shape {expected}){more}")]
    MissingParam {
        /// PyTorch-style name.
        name: String,
        /// Expected shape.
        expected: String,
        /// A note on further problems.
        more: String,
    },
    /// A parameter tensor the model does not have was given.
    #[error("unexpected parameter `{name}` {found}: the model has no tensor of this name{more}")]
    UnexpectedParam {
        /// The name given.
        name: String,
        /// Its shape.
        found: String,
        /// A note on further problems.
        more: String,
    },
    /// A parameter tensor has the wrong shape.
    #[error("parameter `{name}` has shape {found}; the model expects {expected}{more}")]
    ParamShape {
        /// PyTorch-style name.
        name: String,
        /// The shape given.
        found: String,
        /// The expected shape.
        expected: String,
        /// A note on further problems.
        more: String,
    },
    /// A schedule cannot run a layer.
    #[error("schedule for layer `{layer}`: {reason}")]
    Schedule {
        /// The layer (or separable stage).
        layer: String,
        /// Why not.
        reason: String,
    },
    /// Generated code accessed a buffer out of its bounds (a lowering bug, caught by the IR
    /// interpreter).
    #[error("function `{function}` accesses `{buffer}[{index}..{end}]`, outside its {len} elements")]
    OutOfBounds {
        /// The function.
        function: String,
        /// The buffer.
        buffer: String,
        /// First element accessed.
        index: i64,
        /// One past the last.
        end: i64,
        /// The buffer's length.
        len: u64,
    },
    /// A buffer given to a plan has the wrong length.
    #[error("{what} has {found} elements; the plan expects {expected}")]
    PlanArgument {
        /// Which buffer.
        what: String,
        /// Its length (or count).
        found: u64,
        /// The plan's.
        expected: u64,
    },
    /// A tensor's data length does not match its shape.
    #[error("a tensor of shape {shape} needs {expected} values, but {found} were given")]
    TensorLength {
        /// The shape.
        shape: String,
        /// The product of the shape (saturated).
        expected: u128,
        /// The data length.
        found: usize,
    },
}
