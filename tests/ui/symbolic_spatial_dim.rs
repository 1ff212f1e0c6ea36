// The `conv!` diagnostic for the macro needs concrete spatial dims.

convgen::conv! {
    mod model {
        input x: [1, 8, H, 6];
        pointwise p(x) { out: 8 }
    }
}

fn main() {
    // The module is still declared (as a stub), so using it adds no errors.
    let params = model::Params::random(1).pack();
    model::forward(&model::new_input(), &params, &mut model::new_output(), &mut model::Workspace::new());
}
