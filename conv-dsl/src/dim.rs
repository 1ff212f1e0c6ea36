//! Dims that may be symbolic: `N`, `H`, and what the layers make of them (`(H-1)/2+1`).
//!
//! A concrete model has only [`Dim::Known`] dims. A model with symbolic input dims keeps the shape
//! arithmetic as a small expression, folded as it is built, for display and for comparing the two
//! operands of an `add`; the concrete sizes are computed again when the model is bound to an input.

use std::fmt;

/// One dim of a shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dim {
    /// A concrete size.
    Known(u64),
    /// A symbolic input dim, bound at run time.
    Symbol(String),
    /// `dim + offset` (offset may be negative).
    Offset(Box<Dim>, i64),
    /// `floor(dim / divisor)`.
    FloorDiv(Box<Dim>, u64),
    /// `ceil(dim / divisor)`.
    CeilDiv(Box<Dim>, u64),
}

impl Dim {
    /// The concrete size, if the dim is not symbolic.
    pub fn known(&self) -> Option<u64> {
        match self {
            Dim::Known(size) => Some(*size),
            _ => None,
        }
    }

    /// `self + offset`, folded.
    pub fn offset(self, offset: i64) -> Dim {
        match self {
            _ if offset == 0 => self,
            Dim::Known(size) => Dim::Known(size.saturating_add_signed(offset)),
            Dim::Offset(inner, existing) => inner.offset(existing + offset),
            other => Dim::Offset(Box::new(other), offset),
        }
    }

    /// `floor(self / divisor)`, folded.
    pub fn floor_div(self, divisor: u64) -> Dim {
        match self {
            _ if divisor == 1 => self,
            Dim::Known(size) => Dim::Known(size / divisor),
            other => Dim::FloorDiv(Box::new(other), divisor),
        }
    }

    /// `ceil(self / divisor)`, folded.
    pub fn ceil_div(self, divisor: u64) -> Dim {
        match self {
            _ if divisor == 1 => self,
            Dim::Known(size) => Dim::Known(size.div_ceil(divisor)),
            other => Dim::CeilDiv(Box::new(other), divisor),
        }
    }

    fn is_atom(&self) -> bool {
        matches!(self, Dim::Known(_) | Dim::Symbol(_))
    }
}

/// `/` is floor division; `ceil(a/b)` is written out.
impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Known(size) => write!(f, "{size}"),
            Dim::Symbol(name) => write!(f, "{name}"),
            Dim::Offset(inner, offset) if *offset < 0 => write!(f, "{inner}-{}", offset.unsigned_abs()),
            Dim::Offset(inner, offset) => write!(f, "{inner}+{offset}"),
            Dim::FloorDiv(inner, divisor) if inner.is_atom() => write!(f, "{inner}/{divisor}"),
            Dim::FloorDiv(inner, divisor) => write!(f, "({inner})/{divisor}"),
            Dim::CeilDiv(inner, divisor) => write!(f, "ceil({inner}/{divisor})"),
        }
    }
}

/// Writes `[a, b, c]`.
pub fn fmt_shape<T: fmt::Display>(shape: &[T]) -> String {
    let parts: Vec<String> = shape.iter().map(ToString::to_string).collect();
    format!("[{}]", parts.join(", "))
}
