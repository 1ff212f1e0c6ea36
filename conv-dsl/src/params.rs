//! Named parameter tensors: checking a set against a network, and PyTorch-like random ones.

use std::collections::BTreeMap;

use crate::dim::fmt_shape;
use crate::error::Error;
use crate::random::SplitMix64;
use crate::spec::Network;
use crate::tensor::Tensor;

/// Parameter tensors by PyTorch-style name (`c1.weight`, `s.dw.bias`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Params {
    tensors: BTreeMap<String, Tensor>,
}

impl Params {
    /// No tensors.
    pub fn new() -> Self {
        Params::default()
    }

    /// Adds or replaces a tensor.
    pub fn insert(&mut self, name: impl Into<String>, tensor: Tensor) {
        self.tensors.insert(name.into(), tensor);
    }

    /// A tensor by name.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.tensors.get(name)
    }

    /// All tensors, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.tensors.iter().map(|(name, tensor)| (name.as_str(), tensor))
    }

    /// How many tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Checks that these are exactly the network's parameters with the right shapes. The error names
    /// the first problem (in the network's parameter order) and counts the others.
    pub fn validate(&self, network: &Network) -> Result<(), Error> {
        let expected = network.parameters();
        let mut problems: Vec<Error> = Vec::new();
        for param in &expected {
            match self.tensors.get(&param.name) {
                None => problems.push(Error::MissingParam {
                    name: param.name.clone(),
                    expected: fmt_shape(&param.shape),
                    more: String::new(),
                }),
                Some(tensor) if tensor.shape_u64() != param.shape => problems.push(Error::ParamShape {
                    name: param.name.clone(),
                    found: fmt_shape(tensor.shape()),
                    expected: fmt_shape(&param.shape),
                    more: String::new(),
                }),
                Some(_) => {}
            }
        }
        for (name, tensor) in &self.tensors {
            if !expected.iter().any(|param| &param.name == name) {
                problems.push(Error::UnexpectedParam {
                    name: name.clone(),
                    found: fmt_shape(tensor.shape()),
                    more: String::new(),
                });
            }
        }
        let others = problems.len().saturating_sub(1);
        let Some(mut first) = problems.into_iter().next() else {
            return Ok(());
        };
        if others > 0 {
            let note = format!(" (and {others} more parameter problem{})", if others == 1 { "" } else { "s" });
            match &mut first {
                Error::MissingParam { more, .. }
                | Error::UnexpectedParam { more, .. }
                | Error::ParamShape { more, .. } => {
                    *more = note;
                }
                _ => {}
            }
        }
        Err(first)
    }

    /// Deterministic random parameters with PyTorch's default initialisation of `Conv*d`
    /// (`kaiming_uniform_(a=√5)`): weights and biases uniform in ±1/√fan_in, fan_in = in/groups ·
    /// prod(kernel). The same seed gives the same values in every convgen version.
    pub fn random(network: &Network, seed: u64) -> Params {
        let mut rng = SplitMix64::new(seed);
        let mut params = Params::new();
        for param in network.parameters() {
            let bound = 1.0 / (param.fan_in as f32).sqrt();
            let shape: Vec<usize> = param.shape.iter().map(|&dim| dim as usize).collect();
            let mut tensor = Tensor::zeros(shape);
            for value in tensor.data_mut() {
                *value = bound * rng.symmetric();
            }
            params.insert(param.name, tensor);
        }
        params
    }
}
