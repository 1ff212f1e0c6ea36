// The `conv!` diagnostic for `add` of two shapes.

convgen::conv! {
    mod model {
        input x: [1, 8, 6, 6];
        pointwise p(x) { out: 16 }
        add r(p, x)
    }
}

fn main() {
    // The module is still declared (as a stub), so using it adds no errors.
    let params = model::Params::random(1).pack();
    model::forward(&model::new_input(), &params, &mut model::new_output(), &mut model::Workspace::new());
}
