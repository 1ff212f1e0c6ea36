//! `CompiledModel::run_ndarray` (feature `ndarray`): `cargo test --features ndarray --test ndarray`.
#![cfg(feature = "ndarray")]

use convgen::{Backend, CompiledModel, Params, compile_source};
use ndarray::{Array, ArrayD, IxDyn};

#[test]
fn ndarray_views_run_like_slices() {
    let network = compile_source("m.conv", "input x: [N, 4, H, W]; depthwise d(x) { kernel: 3, pad: 1, act: relu }")
        .expect("the model checks");
    let model = CompiledModel::new(network, Backend::Jit);
    let params = model.pack(&Params::random(model.network(), 1)).unwrap();
    let input: ArrayD<f32> =
        Array::from_shape_fn(IxDyn(&[2, 4, 5, 6]), |index| (index[1] * 7 + index[3]) as f32 / 10.0);
    let mut output = ArrayD::<f32>::zeros(IxDyn(&[2, 4, 5, 6]));
    model.run_ndarray(input.view(), &params, output.view_mut()).unwrap();

    let mut expected = vec![0.0; 240];
    model.run((&[2, 4, 5, 6][..], input.as_slice().unwrap()), &params, (&[2, 4, 5, 6][..], &mut expected)).unwrap();
    assert_eq!(output.as_slice().unwrap(), expected.as_slice());

    // A transposed (non-contiguous) view is refused, not copied.
    let transposed = input.view().reversed_axes();
    let mut other = ArrayD::<f32>::zeros(IxDyn(&[6, 5, 4, 2]));
    let error = model.run_ndarray(transposed, &params, other.view_mut()).unwrap_err();
    assert!(error.to_string().contains("not in standard"), "{error}");
}
