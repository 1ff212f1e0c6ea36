// `conv_file!` with errors inside the file: reported on the path, with the file's line and column.
// trybuild builds this file as a crate under `target/tests/trybuild/convgen/`, hence the `../`s
// back to the workspace.

convgen::conv_file!(mod model = "../../../../tests/ui/models/bad_groups.conv");

fn main() {
    // The module is still declared (as a stub), so using it adds no errors.
    let params = model::Params::random(1).pack();
    model::forward(&model::new_input(), &params, &mut model::new_output(), &mut model::Workspace::new());
}
