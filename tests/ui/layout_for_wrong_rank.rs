// The `conv!` diagnostic for a layout name that does not fit the input's rank.

convgen::conv! {
    mod model {
        input x: [1, 8, 6] layout nhwc;
        conv c(x) { out: 8, kernel: 3 }
    }
}

fn main() {
    // The module is still declared (as a stub), so using it adds no errors.
    let params = model::Params::random(1).pack();
    model::forward(&model::new_input(), &params, &mut model::new_output(), &mut model::Workspace::new());
}
