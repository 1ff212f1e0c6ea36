// The `conv!` diagnostic for a key that the layer kind does not take (`dw_act` is for `separable`).

convgen::conv! {
    mod model {
        input x: [1, 8, 6, 6];
        conv c(x) { out: 8, kernel: 3, dw_act: relu }
    }
}

fn main() {
    // The module is still declared (as a stub), so using it adds no errors.
    let params = model::Params::random(1).pack();
    model::forward(&model::new_input(), &params, &mut model::new_output(), &mut model::Workspace::new());
}
