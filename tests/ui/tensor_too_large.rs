// The `conv!` diagnostic for tensors have at most 2^31 elements.

convgen::conv! {
    mod model {
        input x: [1, 8, 65536, 65536];
        pointwise p(x) { out: 8 }
    }
}

fn main() {
    // The module is still declared (as a stub), so using it adds no errors.
    let params = model::Params::random(1).pack();
    model::forward(&model::new_input(), &params, &mut model::new_output(), &mut model::Workspace::new());
}
