//! A dense f32 tensor in C order: the interpreter's values, inputs, outputs and parameters.

use crate::dim::fmt_shape;
use crate::error::Error;

/// A dense, C-order f32 tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Vec<f32>,
}

impl Tensor {
    /// A tensor of `shape` holding `data` (C order); the length must be the shape's product.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self, Error> {
        let expected =
            shape.iter().try_fold(1u128, |product, &dim| product.checked_mul(dim as u128)).unwrap_or(u128::MAX);
        if expected != data.len() as u128 {
            return Err(Error::TensorLength { shape: fmt_shape(&shape), expected, found: data.len() });
        }
        Ok(Tensor { shape, data })
    }

    /// A tensor of zeros (the shape's product must fit in memory; callers bound it first).
    pub fn zeros(shape: Vec<usize>) -> Self {
        let len = shape.iter().product();
        Tensor { shape, data: vec![0.0; len] }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The shape as `u64`s.
    pub fn shape_u64(&self) -> Vec<u64> {
        self.shape.iter().map(|&dim| dim as u64).collect()
    }

    /// The values in C order.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// The values, mutably.
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// The values, by value.
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }
}
