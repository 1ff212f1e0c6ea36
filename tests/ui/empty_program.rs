// The `conv!` diagnostic for a model needs an input and a layer.

convgen::conv! {
    mod model {}
}

fn main() {
    // The module is still declared (as a stub), so using it adds no errors.
    let params = model::Params::random(1).pack();
    model::forward(&model::new_input(), &params, &mut model::new_output(), &mut model::Workspace::new());
}
