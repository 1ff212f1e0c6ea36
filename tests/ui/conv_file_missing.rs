// `conv_file!` with a path that does not exist (relative to the crate's directory).

convgen::conv_file!(mod model = "models/no_such_model.conv");

fn main() {
    // The module is still declared (as a stub), so using it adds no errors.
    let params = model::Params::random(1).pack();
    model::forward(&model::new_input(), &params, &mut model::new_output(), &mut model::Workspace::new());
}
