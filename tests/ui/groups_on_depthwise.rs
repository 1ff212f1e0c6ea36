// The `conv!` diagnostic for `groups` on a depthwise layer (its groups are its channels).

convgen::conv! {
    mod model {
        input x: [1, 8, 6, 6];
        depthwise d(x) { kernel: 3, groups: 2 }
    }
}

fn main() {
    // The module is still declared (as a stub), so using it adds no errors.
    let params = model::Params::random(1).pack();
    model::forward(&model::new_input(), &params, &mut model::new_output(), &mut model::Workspace::new());
}
