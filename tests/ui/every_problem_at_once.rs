// The `conv!` diagnostic for three problems in three layers, all reported at once.

convgen::conv! {
    mod model {
        input x: [1, 32, 6, 6];
        conv c(x) { out: 64, kernel: 3, groups: 3 }
        pointwise p(y) { out: 8 }
        pointwise q(x) { out: 8, act: gelu }
    }
}

fn main() {
    // The module is still declared (as a stub), so using it adds no errors.
    let params = model::Params::random(1).pack();
    model::forward(&model::new_input(), &params, &mut model::new_output(), &mut model::Workspace::new());
}
