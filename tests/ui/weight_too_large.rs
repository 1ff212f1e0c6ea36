// The `conv!` diagnostic for a weight tensor over the element limit.

convgen::conv! {
    mod model {
        input x: [1, 65536, 1, 1];
        conv c(x) { out: 65536, kernel: 1 }
    }
}

fn main() {
    // The module is still declared (as a stub), so using it adds no errors.
    let params = model::Params::random(1).pack();
    model::forward(&model::new_input(), &params, &mut model::new_output(), &mut model::Workspace::new());
}
