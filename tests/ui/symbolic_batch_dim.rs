// The `conv!` diagnostic for the macro needs a concrete batch dim.

convgen::conv! {
    mod model {
        input x: [N, 6, 8] layout nwc;
        pointwise p(x) { out: 8 }
    }
}

fn main() {
    // The module is still declared (as a stub), so using it adds no errors.
    let params = model::Params::random(1).pack();
    model::forward(&model::new_input(), &params, &mut model::new_output(), &mut model::Workspace::new());
}
